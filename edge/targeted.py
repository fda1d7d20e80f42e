"""Cache-Control fields targeted at this cache, pure: CDN-Cache-Control (RFC 9213) and
Surrogate-Control (W3C Edge Architecture 1.0).

An origin behind a CDN often wants browsers to keep a response for a minute and the CDN
for a day. RFC 9213 §2.1: a cache whose target list holds a field name present in the
response with a valid, non-empty value uses that field's directives and ignores
Cache-Control and Expires. Our target list is `TARGETS`, in order. Surrogate-Control
directives may name the device they are for (``max-age=60;vcdn-edge``): those for another
device are not ours; our fills announce the device name in ``Surrogate-Capability``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

#: Our device token in Surrogate-Capability / Surrogate-Control targets.
DEVICE: Final = "vcdn-edge"
#: What fills announce (Edge Architecture §3: ``device="Surrogate/1.0"``).
CAPABILITY: Final = f'{DEVICE}="Surrogate/1.0"'
#: The target list, most specific first (RFC 9213 §2.1).
TARGETS: Final = ("CDN-Cache-Control", "Surrogate-Control")


def _values(headers: Mapping[str, str], name: str) -> str | None:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        found = getall(name, [])
        return ", ".join(found) if found else None
    value = headers.get(name)
    return value if value is not None else headers.get(name.lower())


def _surrogate_for_us(value: str) -> str:
    """The directives of a Surrogate-Control value that apply to this device: untargeted
    ones, and those whose ``;target`` is us."""
    mine: list[str] = []
    for item in value.split(","):
        directive, semi, target = item.partition(";")
        directive = directive.strip()
        if not directive:
            continue
        if semi and target.strip().lower() != DEVICE:
            continue
        mine.append(directive)
    return ", ".join(mine)


def targeted_cache_control(headers: Mapping[str, str]) -> str | None:
    """The Cache-Control-like directives this cache must use instead of Cache-Control
    and Expires, or None when no targeted field applies."""
    for name in TARGETS:
        value = _values(headers, name)
        if value is None:
            continue
        if name == "Surrogate-Control":
            value = _surrogate_for_us(value)
        if _valid(value):
            return value
    return None


def _valid(value: str) -> bool:
    """Non-empty and made of directives (token or token=value), RFC 9213 §2.1."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        return False
    for item in items:
        name = item.partition("=")[0].strip()
        if not name or any(c in name for c in ' \t"();'):
            return False
    return True
