"""Title ids: the one rule every component applies to a title name.

A title id appears in URL paths (``/v/{title}/...``, ``/s/{token}/{title}/...``), in
directory names under the origin root and in cache keys, so it must be safe in all three
without escaping: ASCII letters, digits, ``.``, ``_`` and ``-``, starting with a letter or
digit (so never ``.`` or ``..``, never a hidden directory), at most 128 characters.
"""

from __future__ import annotations

import re
from typing import Final

from vcdn.errors import ClientError

TITLE_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def is_valid_title(title: str) -> bool:
    """True when `title` may name a title."""
    return TITLE_RE.fullmatch(title) is not None


def validate_title(title: str) -> str:
    """Return `title` unchanged, or raise ClientError saying what a title id may hold."""
    if not is_valid_title(title):
        raise ClientError(
            f"Title id {title!r} is not valid: use 1-128 characters of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit."
        )
    return title
