"""`vcdn origin` as a real process: it prints where it listens, sends bodies with the
sendfile(2) system call under uvloop (proved with strace), stops cleanly on SIGTERM and
SIGINT, and refuses bad settings with one clear line."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_tool
from tests.origin.content.conftest import LARGE, TITLE, build_store, start_origin


def get(url: str, headers: dict[str, str] | None = None) -> bytes:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


@pytest.mark.slow
def test_bodies_go_out_with_sendfile_under_uvloop(tmp_path: Path) -> None:
    """strace counts sendfile calls made by the origin while it serves large files, and the
    origin's start-up log shows it runs on uvloop (where aiohttp alone never sendfiles)."""
    strace = require_tool("strace")
    root = tmp_path / "store"
    files = build_store(root)
    summary = tmp_path / "strace.txt"
    proc, url = start_origin(
        root, strace, "-f", "-c", "-e", "trace=sendfile", "-o", str(summary), timeout=30
    )
    try:
        assert get(f"{url}/v/{TITLE}/large.bin") == files["large.bin"]
        part = get(f"{url}/v/{TITLE}/large.bin", {"Range": f"bytes=1000-{LARGE - 1}"})
        assert part == files["large.bin"][1000:]
        assert b"ok" in get(f"{url}/healthz")  # alive after the transfers
    finally:
        # strace blocks fatal signals while it runs a command (-I3): stop the origin itself.
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        for child in children:
            os.kill(int(child), signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
    _, err = proc.communicate()
    assert '"loop":"uvloop' in err, err[-2000:]
    text = summary.read_text()
    match = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?sendfile$", text, re.M)
    assert match, text
    assert int(match.group(1)) >= 2, text


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stops_cleanly_on_signals(tmp_path: Path, sig: signal.Signals) -> None:
    root = tmp_path / "store"
    build_store(root)
    proc, url = start_origin(root)
    assert b"ok" in get(f"{url}/healthz")
    proc.send_signal(sig)
    assert proc.wait(timeout=10) == 0
    _, err = proc.communicate()
    assert "Traceback" not in err
    assert '"event":"stopped"' in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--root", "/nonexistent/store"], "is not a directory"),
        ([], "Setting 'root' is required"),
        (["--root", ".", "--port", "http"], "invalid int value"),
        (["--root", ".", "--port", "70000"], "port must be between 0 and 65535"),
        (["--root", ".", "--log-level", "loud"], "Setting 'log_level'"),
        (["--root", ".", "--host", "192.0.2.1", "--port", "0"], "Cannot listen on 192.0.2.1:0"),
    ],
)
def test_bad_settings_give_one_clear_line(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vcdn.cli", "origin", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "vcdn.cli", "origin", "--root", str(tmp_path),
             "--port", str(port)],
            cwd=ROOT, capture_output=True, text=True, timeout=30,
        )
    assert proc.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "Traceback" not in proc.stderr
