"""`vcdn.keyreload.KeyWatch`: SIGHUP and file changes reload keys; a bad file keeps the old."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from vcdn.keyreload import KeyWatch, read_keys
from vcdn.tokens import KeyRing


def _watch(path: Path, applied: list[KeyRing], interval: float = 0.05) -> KeyWatch:
    return KeyWatch(
        lambda: read_keys("", path), applied.append, [path],
        current=read_keys("", path), interval=interval,
    )


async def _until(check, within: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_sighup_reloads_at_once(tmp_path: Path) -> None:
    """A SIGHUP to this process puts the file's new keys into service."""
    path = tmp_path / "keys"
    path.write_text("k1:0123456789abcdef-one\n")
    applied: list[KeyRing] = []
    watch = _watch(path, applied, interval=60.0)  # no polling: only the signal can do it
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.sleep(0.05)
        path.write_text("k2:0123456789abcdef-two\n")
        os.kill(os.getpid(), signal.SIGHUP)
        assert await _until(lambda: bool(applied))
        assert list(applied[-1]) == ["k2"]
    finally:
        task.cancel()


async def test_a_changed_file_reloads_and_a_bad_one_keeps_the_keys(tmp_path: Path) -> None:
    """A change is noticed without a signal; a file that no longer parses (or is empty)
    leaves the keys in service untouched."""
    path = tmp_path / "keys"
    path.write_text("k1:0123456789abcdef-one\n")
    applied: list[KeyRing] = []
    watch = _watch(path, applied)
    task = asyncio.create_task(watch.run())
    try:
        path.write_text("k2:0123456789abcdef-two\nk1:0123456789abcdef-one\n")
        assert await _until(lambda: len(applied) == 1)
        assert list(applied[0]) == ["k2", "k1"]
        for bad in ("k3:short\n", "", "k3:0123456789abcdef;not_after=soon\n"):
            path.write_text(bad)
            await asyncio.sleep(0.3)
        assert len(applied) == 1
        assert watch.reload("test") is False
    finally:
        task.cancel()
