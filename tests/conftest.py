"""Shared fixtures: the repository root, test data, and real-tool availability."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The path of a real tool; in CI a missing tool is a failure, never a skip."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"'{name}' is not installed; `make test` installs it.")
        pytest.skip(f"'{name}' is not installed; `make test` installs it.")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def test_data() -> Path:
    return DATA
