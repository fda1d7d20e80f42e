"""Vary: secondary cache keys, pure (RFC 9111 §4.1).

A response with ``Vary: Accept-Language`` answers only requests whose Accept-Language
matches the request it was fetched with. The store keeps each such variant under its own
key, ``primary + "\\n" + secondary``, where the secondary key lists the named request
fields as the fill sent them, normalised so that spellings of one preference share a
variant (``en-US,en;q=0.5`` and ``en-us, en;q=0.5``). A request selects a stored variant
when its own secondary key, built with that variant's Vary, is the same. A request path
never holds a line feed, so a primary key and a variant key cannot collide; plain keys
stay what they were. The hit path (`edge.fastpath`) looks up the plain key first and
selects a variant only when there is none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

SEPARATOR: Final = "\n"
#: How an absent field is spelled in a secondary key (an empty value is "").
ABSENT: Final = "\x00"
_SPACES: Final = re.compile(r"\s*([,;=])\s*|\s+")


def fields(vary: str | None) -> tuple[str, ...]:
    """The field names a Vary value lists, lower-cased, sorted and unique; ``("*",)`` when
    it holds ``*`` (never matches, §4.1)."""
    if not vary:
        return ()
    names = {v.strip().lower() for v in vary.split(",") if v.strip()}
    if "*" in names:
        return ("*",)
    return tuple(sorted(names))


def _get(headers: Mapping[str, str], name: str) -> str | None:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        values = getall(name, [])
        return ", ".join(values) if values else None
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _collapse(value: str) -> str:
    """Whitespace around separators and runs of it carry no meaning (RFC 9110 §5.6)."""
    return _SPACES.sub(lambda m: m.group(1) or " ", value.strip())


def normalise(name: str, value: str) -> str:
    """One request field's value in the form variants are keyed by."""
    if name == "accept-encoding":
        # A set of codings: order and q=1 do not matter, q=0 means "not this one".
        codings = set()
        for item in value.split(","):
            coding, _, params = item.partition(";")
            coding = coding.strip().lower()
            q = params.replace(" ", "").lower()
            if coding and not re.fullmatch(r"q=0(\.0*)?", q):
                codings.add(coding)
        return ",".join(sorted(codings))
    if name in ("accept-language", "accept", "accept-charset"):
        return _collapse(value).lower()
    return _collapse(value)


def secondary(names: Iterable[str], request: Mapping[str, str]) -> str:
    """The secondary key of `request` for a response that varies on `names`."""
    parts = []
    for name in names:
        value = _get(request, name)
        parts.append(f"{name}={ABSENT if value is None else normalise(name, value)}")
    return "&".join(parts)


def variant_key(primary: str, names: tuple[str, ...], request: Mapping[str, str]) -> str:
    return f"{primary}{SEPARATOR}{secondary(names, request)}"


def primary_of(key: str) -> str:
    return key.partition(SEPARATOR)[0]


def storage_key(primary: str, vary: str | None, request: Mapping[str, str]) -> str | None:
    """Where a response with this Vary, fetched with `request`, is stored: `primary`
    without Vary, a variant key with it, None for ``Vary: *`` (not storable)."""
    names = fields(vary)
    if not names:
        return primary
    if names == ("*",):
        return None
    return variant_key(primary, names, request)


def selects(key: str, vary: str | None, request: Mapping[str, str]) -> bool:
    """Does the stored response at `key` (with this Vary) answer `request` (§4.1)?"""
    names = fields(vary)
    if not names:
        return SEPARATOR not in key
    if names == ("*",):
        return False
    return key == variant_key(primary_of(key), names, request)
