"""Shared fixtures: the repository root, test data, and real-tool availability."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(message: str) -> None:
    """Skip on a developer's machine that lacks something; in CI (CI=true) fail loudly,
    since CI must run everything the README promises."""
    if IN_CI:
        pytest.fail(f"CI cannot run this test: {message}")
    pytest.skip(message)


def require_tool(name: str) -> str:
    """The path of a real tool; in CI a missing tool is a failure, never a skip."""
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"'{name}' is not installed; `make test` installs it.")
    assert path is not None
    return path


def require_root(why: str) -> None:
    if os.geteuid() != 0:
        skip_or_fail(f"{why} needs root (CI runs as root)")


@contextlib.contextmanager
def tmpfs(where: Path, options: str) -> Iterator[Path]:
    """A real tmpfs mounted at `where` with mount(8) `options` (e.g. "size=3m" or "ro"),
    unmounted afterwards. Needs root and CAP_SYS_ADMIN; in CI their absence fails."""
    require_root("mounting a tmpfs")
    mount = require_tool("mount")
    where.mkdir(exist_ok=True)
    done = subprocess.run([mount, "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run([require_tool("umount"), "-l", str(where)], check=False)


@pytest.fixture(scope="session", autouse=True)
def _bench_results_elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests that run a benchmark's main() must not overwrite the recorded runs in
    bench/results/ (the README's table is generated from them)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VCDN_BENCH_RESULTS", str(tmp_path_factory.mktemp("bench-results")))
        yield


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def test_data() -> Path:
    return DATA
