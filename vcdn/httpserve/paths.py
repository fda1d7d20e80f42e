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
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from vcdn.errors import ClientError, NotFound

#: Bytes that must never arrive percent-encoded: '.', '/', '\\', '%' (double encoding).
_FORBIDDEN_ENCODED: Final = frozenset(b"./\\%")
_HEX: Final = frozenset("0123456789abcdefABCDEF")


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
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
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
