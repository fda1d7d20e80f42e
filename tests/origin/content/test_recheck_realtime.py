"""The origin's once-a-second re-checks, with real time and a real `vcdn origin` process:
a republished file (a new inode renamed into place, as the packager does) is served within
about a second, a deleted one gets 404, and a rewritten manifest.json changes the ETag."""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from origin.content.catalog import RECHECK_SECONDS as CATALOG_RECHECK
from origin.content.hotpath import RECHECK_SECONDS as HOT_RECHECK
from tests.origin.content.conftest import TITLE, build_store, start_origin, stop

pytestmark = pytest.mark.slow
#: What the claim allows (one re-check period) plus room for a loaded 2-core machine.
SLACK = 1.5


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), r.headers.get("ETag", "")
    except urllib.error.HTTPError as e:
        return e.code, b"", ""


def seconds_until(cond: Callable[[], bool], limit: float) -> float:
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < limit, f"not seen within {limit} s"
        time.sleep(0.02)
    return time.monotonic() - start


def replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_republish_delete_and_manifest_change_are_seen_within_a_second(tmp_path: Path) -> None:
    root = tmp_path / "store"
    files = build_store(root)
    proc, url = start_origin(root)
    try:
        small = f"{url}/v/{TITLE}/small.bin"
        for _ in range(3):  # hot: answered from RAM
            assert get(small)[:2] == (200, files["small.bin"])
        new = os.urandom(len(files["small.bin"]))
        replace(root / TITLE / "small.bin", new)
        took = seconds_until(lambda: get(small)[1] == new, HOT_RECHECK + SLACK)
        assert get(small)[1] == new
        assert took <= HOT_RECHECK + SLACK

        seg = f"{url}/v/{TITLE}/v1/seg_00001.m4s"
        status, body, etag = get(seg)
        assert status == 200 and etag.strip('"') == hashlib.sha256(body).hexdigest()
        (root / TITLE / "v1" / "seg_00001.m4s").unlink()
        seconds_until(lambda: get(seg)[0] == 404, HOT_RECHECK + SLACK)

        init = f"{url}/v/{TITLE}/v1/init.mp4"
        _, data, before = get(init)
        manifest_path = root / TITLE / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        for f in manifest["files"]:
            if f["path"] == "v1/init.mp4":
                f["sha256"] = "ab" * 32  # a republish with another manifest
        time.sleep(0.01)
        replace(manifest_path, json.dumps(manifest).encode())
        seconds_until(lambda: get(init)[2].strip('"') == "ab" * 32, CATALOG_RECHECK + SLACK)
        assert before.strip('"') == hashlib.sha256(data).hexdigest()
    finally:
        stop(proc)
