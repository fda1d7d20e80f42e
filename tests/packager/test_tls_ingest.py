"""The live uploader's client to the origin verifies like every other client: the CA of
VCDN_CA_BUNDLE (or the system store), and a certificate it cannot trust is one line naming
the origin and the reason, with no retry that could not succeed."""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from packager.ingest_client import IngestClient
from tests.conftest import ROOT
from tests.live_media import event_doc
from tests.vcdn.tls_helpers import ca_file, issue
from vcdn.errors import UpstreamError

TOKEN = "ingest-secret-0123456789"


@pytest.fixture
def https_origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`vcdn origin` serving HTTPS only, with a chain from a test CA; (URL, CA file)."""
    ca = trustme.CA()
    leaf = issue(ca, tmp_path / "tls", "127.0.0.1")
    (tmp_path / "root").mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcdn.cli", "origin", "--root", str(tmp_path / "root"),
         "--port", "0", "--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1",
             "VCDN_ORIGIN_INGEST_TOKEN_SHA256": hashlib.sha256(TOKEN.encode()).hexdigest()},
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    line = proc.stdout.readline() if ready else ""
    match = re.search(r"listening on (https://\S+)", line)
    try:
        assert match, line
        yield match.group(1), ca_file(ca, tmp_path / "ca")
    finally:
        proc.terminate()
        proc.wait(10)


def test_ingest_over_https_verifies_against_the_ca_bundle(
    https_origin: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, ca = https_origin
    monkeypatch.setenv("VCDN_CA_BUNDLE", str(ca))
    client = IngestClient(url, "ev", TOKEN)
    try:
        assert client.put("live.json", json.dumps(event_doc(60.0)).encode(),
                          "application/json") == 201
    finally:
        client.close()


def test_ingest_to_an_untrusted_origin_fails_in_one_line(
    https_origin: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, _ = https_origin
    monkeypatch.setenv("VCDN_CA_BUNDLE", str(ca_file(trustme.CA(), tmp_path / "other")))
    client = IngestClient(url, "ev", TOKEN)
    with pytest.raises(UpstreamError) as info:
        client.put("live.json", b"{}", "application/json")
    host = url.removeprefix("https://")
    assert str(info.value) == (f"TLS to the origin at {host} failed: its certificate cannot "
                               "be trusted: it is signed by an unknown CA."), info.value
