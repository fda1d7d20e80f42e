"""URL paths never escape the root: every trick is refused with 400 or 404."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vcdn.errors import ClientError, NotFound
from vcdn.httpserve.paths import resolve_under, safe_relpath


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("t/master.m3u8", "t/master.m3u8"),
        ("t/720p/seg_00001.m4s", "t/720p/seg_00001.m4s"),
        ("t/a%20b.m4s", "t/a b.m4s"),
        ("t/caf%C3%A9.mp4", "t/café.mp4"),
        ("t/v1..2/x", "t/v1..2/x"),  # dots inside a name are fine
    ],
)
def test_clean_paths_pass(raw: str, expected: str) -> None:
    assert safe_relpath(raw) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("../etc/passwd", ClientError),
        ("t/../../etc/passwd", ClientError),
        ("t/./x", ClientError),
        ("t/..", ClientError),
        ("%2e%2e/etc/passwd", ClientError),  # encoded dots
        ("%2E%2E/etc/passwd", ClientError),
        (".%2e/x", ClientError),
        ("t/..%2fetc", ClientError),  # encoded slash
        ("t%2F..%2F..%2Fetc", ClientError),
        ("t/..%5cetc", ClientError),  # encoded backslash
        ("t/%252e%252e/x", ClientError),  # double encoding
        ("t\\..\\etc", ClientError),  # backslashes
        ("t/x%00.m4s", ClientError),  # encoded NUL
        ("t/x\x00.m4s", ClientError),  # raw NUL
        ("/etc/passwd", ClientError),  # absolute
        ("t//x", ClientError),  # empty segment
        ("t/x/", NotFound),  # a directory
        ("t/%zz", ClientError),  # malformed escape
        ("t/%c3", ClientError),  # not UTF-8
        ("t/%0a", ClientError),  # encoded control character
        ("t/.tmp-partial", NotFound),  # dot-files: the packager's temporaries
        ("", NotFound),
    ],
)
def test_tricks_are_refused(raw: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        safe_relpath(raw)


def test_symlink_outside_root_is_not_found(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "t").mkdir(parents=True)
    (tmp_path / "secret").write_text("secret")
    os.symlink(tmp_path / "secret", root / "t" / "link")
    os.symlink(tmp_path, root / "t" / "dirlink")
    with pytest.raises(NotFound):
        resolve_under(root.resolve(), "t/link")
    with pytest.raises(NotFound):
        resolve_under(root.resolve(), "t/dirlink/secret")


def test_symlink_inside_root_resolves(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "t").mkdir(parents=True)
    (root / "t" / "real").write_text("x")
    os.symlink(root / "t" / "real", root / "t" / "alias")
    assert resolve_under(root.resolve(), "t/alias") == (root / "t" / "real").resolve()


def test_sibling_with_root_prefix_is_outside(tmp_path: Path) -> None:
    """/srv/root-other is not under /srv/root even though the string starts the same."""
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "root-other").mkdir()
    (tmp_path / "root-other" / "f").write_text("x")
    os.symlink(tmp_path / "root-other" / "f", root / "f")
    with pytest.raises(NotFound):
        resolve_under(root.resolve(), "f")


@pytest.fixture(params=["openat2", "realpath"])
def opener(request, monkeypatch):
    """open_under with the kernel's RESOLVE_BENEATH, and with the user-space fallback."""
    from vcdn.httpserve import paths

    if request.param == "realpath":
        monkeypatch.setattr(paths, "_openat2_works", False)
    return paths.open_under


def _tree(tmp_path: Path) -> tuple[Path, int]:
    root = tmp_path / "root"
    (root / "t").mkdir(parents=True)
    (root / "t" / "f").write_text("inside")
    (tmp_path / "secret").write_text("secret")
    os.symlink(tmp_path / "secret", root / "t" / "abs-out")
    os.symlink("../../secret", root / "t" / "rel-out")
    os.symlink("f", root / "t" / "rel-in")
    return root.resolve(), os.open(root, os.O_RDONLY | os.O_DIRECTORY)


def test_open_under_opens_files_and_relative_links_inside(tmp_path: Path, opener) -> None:
    root, root_fd = _tree(tmp_path)
    try:
        for rel in ("t/f", "t/rel-in"):
            fd = opener(root, root_fd, rel)
            assert os.read(fd, 100) == b"inside"
            os.close(fd)
    finally:
        os.close(root_fd)


@pytest.mark.parametrize("rel", ["t/abs-out", "t/rel-out", "t/missing", "t", "t/f/x"])
def test_open_under_refuses_escapes_and_missing(tmp_path: Path, opener, rel: str) -> None:
    root, root_fd = _tree(tmp_path)
    try:
        if rel == "t":  # a directory opens but is not a file: the caller checks S_ISREG
            os.close(opener(root, root_fd, rel))
            return
        with pytest.raises(NotFound):
            opener(root, root_fd, rel)
    finally:
        os.close(root_fd)
