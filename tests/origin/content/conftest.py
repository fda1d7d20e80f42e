"""A small content store and a running `vcdn origin` process over it."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

SMALL = 10_000  # below vcdn.httpserve.send.SMALL_BODY: read and written at once
LARGE = 300_000  # above it: sent with sendfile
TITLE = "t"


def build_store(root: Path) -> dict[str, bytes]:
    """Write a packaged-like title and return {relative path: bytes}."""
    rng = random.Random(1234)
    files = {
        "small.bin": rng.randbytes(SMALL),
        "large.bin": rng.randbytes(LARGE),
        "empty.bin": b"",
        "master.m3u8": b"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=100000\nv1/index.m3u8\n",
        "v1/index.m3u8": b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg_00001.m4s\n",
        "v1/init.mp4": rng.randbytes(700),
        "v1/seg_00001.m4s": rng.randbytes(5000),
    }
    for rel, data in files.items():
        path = root / TITLE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    manifest = {
        "title": TITLE,
        "duration": 4.0,
        "segment_seconds": 4.0,
        "format": "fmp4",
        "single_file": False,
        "renditions": [],
        "files": [
            {"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for rel, data in files.items()
            if rel.startswith(("v1/", "master"))
        ],
    }
    (root / TITLE / "manifest.json").write_text(json.dumps(manifest))
    return files


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "store"
    return root, build_store(root)


@dataclass
class Running:
    url: str
    root: Path
    files: dict[str, bytes]
    proc: subprocess.Popen[str]


def start_origin(
    root: Path, *prefix: str, timeout: float = 15.0
) -> tuple[subprocess.Popen[str], str]:
    """Start `vcdn origin --port 0` (optionally under a wrapper such as strace); return its URL."""
    cmd = [*prefix, sys.executable, "-m", "vcdn.cli", "origin", "--root", str(root), "--port", "0"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    match = re.search(r"listening on (http://\S+)", line)
    if not match:
        proc.kill()
        _, err = proc.communicate(timeout=5)
        raise AssertionError(f"origin did not start: {line!r} {err[-2000:]!r}")
    return proc, match.group(1)


def stop(proc: subprocess.Popen[str]) -> int:
    proc.terminate()
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("origin") / "store"
    files = build_store(root)
    proc, url = start_origin(root)
    try:
        yield Running(url, root, files, proc)
    finally:
        stop(proc)
