"""Mapping a URL path onto a file under a root without ever leaving the root.

Two steps, so that the pure part can be tested exhaustively:

* `safe_relpath(raw)` (pure) takes the path still percent-encoded, as it came off the
  wire, and returns a clean relative path or raises. Encoded dots, slashes, backslashes,
  percent signs (double encoding) and control bytes are refused before decoding, so no
  later decoding step can turn them into ``..`` or ``/``; after decoding, ``.``/``..``
  segments, empty segments, absolute paths, backslashes and NUL bytes are refused.
  Those are `ClientError` (400): no legitimate player sends them. Dot-files (the
  packager's temporary files) and directories (a trailing slash) are `NotFound` (404).
* `resolve_under(root, rel)` follows symlinks and refuses (404, so nothing about the
  file system leaks) anything whose real path is outside the root.
* `open_under(root_fd, rel)` opens in one system call what `resolve_under` would allow:
  Linux ``openat2(RESOLVE_BENEATH)`` makes the kernel refuse any step outside the root
  (``..``, absolute symlinks, symlinks leading out), with no race between the check and
  the open and at a quarter of the cost of ``realpath``. Kernels without openat2 (< 5.6)
  or sandboxes that forbid it get `resolve_under` + ``open``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from pathlib import Path
from typing import Final

from vcdn.errors import ClientError, NotFound

#: Bytes that must never arrive percent-encoded: '.', '/', '\\', '%' (double encoding).
_FORBIDDEN_ENCODED: Final = frozenset(b"./\\%")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def _bad(raw: str, why: str) -> ClientError:
    return ClientError(f"Refusing path {raw[:200]!r}: {why}.")


def _decode(raw: str) -> str:
    if "%" not in raw:
        return raw
    out = bytearray()
    i = 0
    encoded = raw.encode("utf-8", "surrogateescape")
    while i < len(encoded):
        c = encoded[i]
        if c != 0x25:  # '%'
            out.append(c)
            i += 1
            continue
        pair = encoded[i + 1 : i + 3].decode("latin-1")
        if len(pair) != 2 or not set(pair) <= _HEX:
            raise _bad(raw, "malformed percent-encoding")
        byte = int(pair, 16)
        if byte in _FORBIDDEN_ENCODED:
            raise _bad(raw, "percent-encoded dot, slash, backslash or percent sign")
        if byte < 0x20 or byte == 0x7F:
            raise _bad(raw, "percent-encoded control character")
        out.append(byte)
        i += 3
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(raw, "not UTF-8 after percent-decoding") from None


def safe_relpath(raw: str) -> str:
    """A clean relative path from a raw (percent-encoded) URL path tail, or raise."""
    if not raw:
        raise NotFound("No file named in the path.")
    if "\x00" in raw or "\\" in raw:
        raise _bad(raw, "NUL byte or backslash")
    path = _decode(raw)
    if _CONTROL.search(path):
        raise _bad(raw, "control character")
    if path.startswith("/"):
        raise _bad(raw, "absolute path")
    if path.endswith("/"):
        raise NotFound(f"No such file: {path!r} (directories are not listed).")
    segments = path.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise _bad(raw, "empty, '.' or '..' segment")
    if any(segment.startswith(".") for segment in segments):
        raise NotFound(f"No such file: {path!r}.")
    return path


def resolve_under(root: Path, rel: str) -> Path:
    """The real path of `rel` under `root` (itself a resolved path); 404 if it escapes.

    The file may not exist; opening it is the caller's job.
    """
    root_text = str(root)
    real = os.path.realpath(os.path.join(root_text, rel))
    if not real.startswith(root_text.rstrip("/") + "/"):
        raise NotFound(f"No such file: {rel!r}.")
    return Path(real)


class _OpenHow(ctypes.Structure):
    """``struct open_how`` of openat2(2)."""

    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_SYS_OPENAT2: Final = 437  # same number on every Linux architecture
_RESOLVE_NO_MAGICLINKS: Final = 0x02
_RESOLVE_BENEATH: Final = 0x08
_HOW: Final = _OpenHow(
    os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY, 0, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS
)
_HOW_REF: Final = ctypes.byref(_HOW)
_HOW_SIZE: Final = ctypes.sizeof(_HOW)
_NOT_FOUND_ERRNOS: Final = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.EXDEV, errno.ELOOP, errno.EACCES, errno.EISDIR,
     errno.ENAMETOOLONG}
)


def _load_syscall() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        func = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    func.restype = ctypes.c_long
    func.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)
    return func


_syscall = _load_syscall()
_openat2_works: bool | None = None if _syscall is not None else False


def open_under(root: Path, root_fd: int, rel: str) -> int:
    """Open `rel` (from `safe_relpath`) for reading, never outside `root`; 404 otherwise.

    `root_fd` is an ``O_DIRECTORY`` fd of `root` (kept open by the caller); `root` is its
    resolved path, used by the fallback. Returns a new fd the caller must close.
    """
    global _openat2_works
    if _openat2_works is not False:
        assert _syscall is not None
        fd = _syscall(_SYS_OPENAT2, root_fd, os.fsencode(rel), _HOW_REF, _HOW_SIZE)
        if fd >= 0:
            _openat2_works = True
            return int(fd)
        err = ctypes.get_errno()
        if err in _NOT_FOUND_ERRNOS:
            raise NotFound(f"No such file: {rel!r}.")
        if err == errno.EINTR:
            return open_under(root, root_fd, rel)
        if err not in (errno.ENOSYS, errno.EPERM) or _openat2_works:
            raise NotFound(f"No such file: {rel!r} ({os.strerror(err)}).")
        _openat2_works = False  # no openat2 here: resolve in user space from now on
    real = resolve_under(root, rel)
    try:
        return os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        raise NotFound(f"No such file: {rel!r}.") from None
