"""Atomic publish: whole titles appear, --force swaps without a gap, failures leave nothing."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from packager.publish import (
    STAGING,
    check_free,
    new_staging,
    prepare_root,
    publish,
    staging_pid,
    sweep_stale,
)
from tests.conftest import tmpfs
from vcdn.errors import Conflict, StoreError


def build(root: Path, title: str, marker: str) -> Path:
    d = new_staging(root, title)
    (d / "master.m3u8").write_text(marker)
    (d / "720p").mkdir()
    (d / "720p" / "index.m3u8").write_text(marker)
    return d


def test_publish_moves_the_build_into_place(tmp_path: Path) -> None:
    prepare_root(tmp_path)
    d = build(tmp_path, "t1", "v1")
    dest = publish(d, tmp_path, "t1", force=False)
    assert dest == tmp_path / "t1" and (dest / "720p" / "index.m3u8").read_text() == "v1"
    assert not d.exists() and list((tmp_path / STAGING).iterdir()) == []
    assert oct(dest.stat().st_mode & 0o777) == oct(0o755)


def test_an_existing_title_is_not_replaced_without_force(tmp_path: Path) -> None:
    prepare_root(tmp_path)
    publish(build(tmp_path, "t1", "v1"), tmp_path, "t1", force=False)
    with pytest.raises(Conflict, match=r"already exists.*--force"):
        check_free(tmp_path, "t1", force=False)
    second = build(tmp_path, "t1", "v2")
    with pytest.raises(Conflict, match="use --force to replace it"):
        publish(second, tmp_path, "t1", force=False)
    assert (tmp_path / "t1" / "master.m3u8").read_text() == "v1"


def test_force_replaces_the_title_and_removes_the_old_version(tmp_path: Path) -> None:
    prepare_root(tmp_path)
    publish(build(tmp_path, "t1", "v1"), tmp_path, "t1", force=False)
    (tmp_path / "t1" / "old-only.ts").write_text("stale")
    check_free(tmp_path, "t1", force=True)
    publish(build(tmp_path, "t1", "v2"), tmp_path, "t1", force=True)
    assert (tmp_path / "t1" / "master.m3u8").read_text() == "v2"
    assert not (tmp_path / "t1" / "old-only.ts").exists()
    assert list((tmp_path / STAGING).iterdir()) == []


def test_force_replacement_never_leaves_the_title_missing(tmp_path: Path) -> None:
    prepare_root(tmp_path)
    publish(build(tmp_path, "t1", "v0"), tmp_path, "t1", force=False)
    missing = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal missing
        while not stop.is_set():
            if not (tmp_path / "t1" / "master.m3u8").exists():
                missing += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, 40):
            publish(build(tmp_path, "t1", f"v{i}"), tmp_path, "t1", force=True)
    finally:
        stop.set()
        thread.join(10)
    assert missing == 0
    assert (tmp_path / "t1" / "master.m3u8").read_text() == "v39"


@pytest.mark.parametrize("layout", ["root-is-a-file", "parent-is-a-file"])
def test_an_unwritable_origin_root_is_refused_with_a_reason(tmp_path: Path, layout: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    root = blocker if layout == "root-is-a-file" else blocker / "origin"
    with pytest.raises(StoreError, match=f"Origin root '{root}' is not writable: "):
        prepare_root(root)


def test_a_read_only_origin_root_is_refused(tmp_path: Path) -> None:
    """Root ignores directory permissions, so as root the parent is a tmpfs mounted
    read-only (what a read-only volume looks like); otherwise a directory without w."""
    if os.geteuid() == 0:
        with tmpfs(tmp_path / "ro", "ro,size=1m") as where:
            with pytest.raises(StoreError, match="is not writable: Read-only file system"):
                prepare_root(where / "origin")
            assert not (where / "origin").exists()
        return
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="is not writable: Permission denied"):
            prepare_root(tmp_path / "origin")
    finally:
        tmp_path.chmod(0o700)


def test_staging_names_carry_the_pid() -> None:
    assert staging_pid("movie.2008.4242.ab_c12xy") == 4242
    assert staging_pid("t1.77.abcdefgh.log") == 77
    assert staging_pid("t1.77.abcdefgh.old") == 77
    assert staging_pid("t1") is None and staging_pid("a.b.c") is None


def test_sweep_removes_only_builds_of_dead_processes(tmp_path: Path) -> None:
    staging = prepare_root(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (staging / f"t1.{dead.pid}.deadbeef").mkdir()
    (staging / f"t1.{dead.pid}.deadbeef.log").write_text("log")
    (staging / f"t2.{os.getpid()}.mine1234").mkdir()
    (staging / "t3.1.initproc").mkdir()
    (staging / "unrelated").mkdir()
    removed = sweep_stale(tmp_path)
    assert sorted(p.name for p in removed) == [f"t1.{dead.pid}.deadbeef",
                                              f"t1.{dead.pid}.deadbeef.log"]
    assert sorted(p.name for p in staging.iterdir()) == sorted(
        [f"t2.{os.getpid()}.mine1234", "t3.1.initproc", "unrelated"]
    )
