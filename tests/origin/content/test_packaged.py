"""A title packaged by the real packager (`vcdn package`), served by `vcdn origin`: every
file in its manifest comes back byte-exact with its sha256 as ETag, ffmpeg plays it, and
a single-file title (EXT-X-BYTERANGE) plays through the origin's range support."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_tool
from tests.origin.content.conftest import start_origin, stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def packaged_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    ffmpeg = require_tool("ffmpeg")
    base = tmp_path_factory.mktemp("packaged")
    source = base / "source.mp4"
    subprocess.run(
        [ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=426x240:rate=24:duration=4",
         "-f", "lavfi", "-i", "sine=frequency=330:duration=4", "-c:v", "libx264",
         "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(source)],
        check=True, timeout=60,
    )
    root = base / "origin"
    for title, extra in (("segs", []), ("single", ["--single-file"])):
        subprocess.run(
            [sys.executable, "-m", "vcdn.cli", "package", str(source), "--title", title,
             "--ladder", "240", "--segment-seconds", "2", "--origin-root", str(root),
             "--preset", "ultrafast", "-q", *extra],
            check=True, cwd=ROOT, timeout=120,
        )
    proc, url = start_origin(root)
    try:
        yield url, root
    finally:
        stop(proc)


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, dict(resp.headers.items()), resp.read()


@pytest.mark.parametrize("title", ["segs", "single"])
def test_every_manifest_file_is_served_exactly(packaged_origin, title: str) -> None:
    url, _ = packaged_origin
    _, _, raw = fetch(f"{url}/v/{title}/manifest.json")
    manifest = json.loads(raw)
    assert manifest["files"]
    for f in manifest["files"]:
        status, headers, body = fetch(f"{url}/v/{title}/{f['path']}")
        assert status == 200
        assert len(body) == f["size"] and hashlib.sha256(body).hexdigest() == f["sha256"]
        assert headers["ETag"] == f'"{f["sha256"]}"'


@pytest.mark.parametrize("title", ["segs", "single"])
def test_ffmpeg_plays_the_packaged_title(packaged_origin, title: str) -> None:
    """For the single-file title ffmpeg reads each segment as a byte range of media.mp4."""
    ffmpeg = require_tool("ffmpeg")
    url, _ = packaged_origin
    before = partial_responses(url)
    run = subprocess.run(
        [ffmpeg, "-v", "error", "-i", f"{url}/v/{title}/master.m3u8", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr
    if title == "single":
        assert partial_responses(url) > before  # the segments were byte ranges


def partial_responses(url: str) -> float:
    _, _, text = fetch(f"{url}/metrics")
    for line in text.decode().splitlines():
        if line.startswith('vcdn_origin_requests_total{status="206"}'):
            return float(line.split()[1])
    return 0.0


def test_curl_ranges_of_a_packaged_segment(packaged_origin) -> None:
    curl = require_tool("curl")
    url, root = packaged_origin
    manifest = json.loads((root / "single" / "manifest.json").read_text())
    media = next(f for f in manifest["files"] if f["path"].endswith(".mp4")
                 and "init" not in f["path"])
    data = (root / "single" / media["path"]).read_bytes()
    out = subprocess.run(
        [curl, "-s", "-f", "-r", "100-1099", f"{url}/v/single/{media['path']}"],
        capture_output=True, check=True, timeout=20,
    ).stdout
    assert out == data[100:1100]
    out = subprocess.run(
        [curl, "-s", "-f", "-r", "-500", f"{url}/v/single/{media['path']}"],
        capture_output=True, check=True, timeout=20,
    ).stdout
    assert out == data[-500:]


@pytest.fixture(scope="module")
def tls_origin(packaged_origin, tmp_path_factory: pytest.TempPathFactory  # type: ignore[no-untyped-def]
               ) -> Iterator[tuple[str, str, Path]]:
    """The same store behind `vcdn origin --tls-cert --tls-key --tls-port 0`: plain HTTP
    and HTTPS at once (a test CA made with trustme)."""
    import re

    import trustme

    from tests.vcdn.tls_helpers import ca_file, issue

    _, root = packaged_origin
    where = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    leaf = issue(ca, where, "127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcdn.cli", "origin", "--root", str(root), "--port", "0",
         "--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key), "--tls-port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    urls: list[str] = []
    while len(urls) < 2:  # readline, not select: both lines may arrive in one buffer
        m = re.search(r"listening on (https?://\S+)", proc.stdout.readline())
        if m is None:
            break
        urls.append(m.group(1))
    try:
        assert len(urls) == 2, urls
        yield urls[0], urls[1], ca_file(ca, where)
    finally:
        stop(proc)


@pytest.mark.parametrize("title", ["segs", "single"])
def test_ffmpeg_plays_the_title_over_https_and_refuses_another_ca(
    tls_origin, title: str, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """Over TLS the origin sends bodies by the copying path (no sendfile); ffmpeg verifies
    the master playlist's certificate against the test CA (and fails with another CA)."""
    import trustme

    from tests.vcdn.tls_helpers import ca_file

    ffmpeg = require_tool("ffmpeg")
    plain, secure, ca = tls_origin
    assert plain.startswith("http://") and secure.startswith("https://")
    run = subprocess.run(
        [ffmpeg, "-v", "error", "-tls_verify", "1", "-ca_file", str(ca),
         "-i", f"{secure}/v/{title}/master.m3u8", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stderr.strip() == "", run.stderr
    other = ca_file(trustme.CA(), tmp_path)
    run = subprocess.run(
        [ffmpeg, "-v", "error", "-tls_verify", "1", "-ca_file", str(other),
         "-i", f"{secure}/v/{title}/master.m3u8", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode != 0, run.stderr


def test_curl_range_over_https_is_byte_exact(tls_origin, packaged_origin) -> None:  # type: ignore[no-untyped-def]
    curl = require_tool("curl")
    _, secure, ca = tls_origin
    _, root = packaged_origin
    manifest = json.loads((root / "single" / "manifest.json").read_text())
    media = next(f for f in manifest["files"] if f["path"].endswith(".mp4")
                 and "init" not in f["path"])
    data = (root / "single" / media["path"]).read_bytes()
    out = subprocess.run(
        [curl, "-s", "-f", "--cacert", str(ca), "-r", "100-299999",
         f"{secure}/v/single/{media['path']}"],
        capture_output=True, check=True, timeout=20)
    assert out.stdout == data[100:300000]
