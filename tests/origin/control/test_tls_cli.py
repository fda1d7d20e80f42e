"""`vcdn control --tls-cert --tls-key`: HTTPS only, verified by curl and the shared client;
SIGHUP puts a new certificate into service in the running process."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import trustme

from tests.conftest import ROOT, require_tool
from tests.vcdn.tls_helpers import ca_file, issue, peer_names, run
from vcdn.control_client import ControlClient

LISTEN = re.compile(r"listening on (https?://\S+)")


def _start(tmp: Path, *extra: str, tokens: str = "operator:operator-secret-0123"
           ) -> tuple[subprocess.Popen[str], list[str]]:
    env = dict(os.environ, VCDN_CONTROL_TOKENS=tokens, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcdn.cli", "control", "--db", f"sqlite:///{tmp}/c.db",
         "--port", "0", *extra],
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=open(tmp / "stderr", "w"), text=True,
    )
    assert proc.stdout is not None
    urls: list[str] = []
    deadline = time.monotonic() + 15
    wanted = 2 if "--tls-port" in extra else 1
    while time.monotonic() < deadline and len(urls) < wanted:
        line = proc.stdout.readline()
        if not line:
            break
        if m := LISTEN.search(line):
            urls.append(m.group(1))
    assert len(urls) == wanted, (tmp / "stderr").read_text()
    return proc, urls


async def test_control_serves_https_and_reloads_on_sighup(tmp_path: Path) -> None:
    ca = trustme.CA()
    first = issue(ca, tmp_path / "one", "127.0.0.1", "control.test")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(first.cert, cert)
    shutil.copy(first.key, key)
    cafile = ca_file(ca, tmp_path)
    proc, urls = _start(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        (url,) = urls
        assert url.startswith("https://127.0.0.1:")
        port = int(url.rpartition(":")[2])
        code, out = await run(require_tool("curl"), "-sS", "--cacert", str(cafile),
                              f"{url}/healthz")
        assert code == 0 and "ok" in out, out
        async with ControlClient(url, "operator-secret-0123", ca_bundle=cafile) as client:
            assert (await client.list_appliances()).appliances == []
        # A new certificate, then SIGHUP: the next handshake gets it.
        second = issue(ca, tmp_path / "two", "127.0.0.1", "renewed.test")
        shutil.copy(second.cert, cert)
        shutil.copy(second.key, key)
        proc.send_signal(signal.SIGHUP)
        names = ""
        for _ in range(50):
            names = await peer_names(port, None, cafile)
            if "renewed.test" in names:
                break
            await asyncio.sleep(0.1)
        assert names == "127.0.0.1,renewed.test"
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


async def test_control_listens_http_and_https_with_tls_port(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = issue(ca, tmp_path, "127.0.0.1")
    proc, urls = _start(tmp_path, "--tls-cert", str(leaf.cert), "--tls-key", str(leaf.key),
                        "--tls-port", "0")
    try:
        plain, secure = urls
        assert plain.startswith("http://") and secure.startswith("https://")
        curl = require_tool("curl")
        code, out = await run(curl, "-sS", f"{plain}/healthz")
        assert code == 0, out
        code, out = await run(curl, "-sS", "--cacert", str(ca_file(ca, tmp_path)),
                              f"{secure}/healthz")
        assert code == 0, out
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
