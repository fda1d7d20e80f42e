"""Which request fields go upstream, pure: for a pass-through and for a fill.

A pass-through relays the client's end-to-end request (RFC 9110 §7.6.1: hop-by-hop fields
and those named by Connection stop here). A fill is the cache's own request made on the
first requester's behalf, as nginx does: the same end-to-end fields, so an origin that
negotiates or logs on them sees a real client, but never the client's validators or
Range. The cache asks for the whole representation and adds its own validators when it
revalidates (RFC 9111 §4.3.1), since a 304 or 206 meant for the client's copy would be
useless for filling ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from edge import targeted
from edge.freshness import HOP_BY_HOP

VIA: Final = "1.1 vcdn-edge"
#: Fields a fill never takes from the client: conditionals and ranges are the cache's own
#: business, a GET fill has no body, and Host/Via are set for the hop.
_NOT_ON_FILL: Final = frozenset(
    {
        "range",
        "if-range",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "content-length",
        "expect",
    }
)


def end_to_end(headers: Iterable[tuple[str, str]], remote: str | None) -> dict[str, str]:
    """The client's end-to-end fields, repeated ones joined, plus ``Via`` and
    ``X-Forwarded-For`` for this hop."""
    pairs = list(headers)
    named = {
        v.strip().lower()
        for n, value in pairs
        if n.lower() == "connection"
        for v in value.split(",")
    }
    out: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for name, value in pairs:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in named or lower in ("host", "via", "x-forwarded-for"):
            continue
        first = spelled.setdefault(lower, name)
        out[first] = f"{out[first]}, {value}" if first in out else value
    prior_via = ", ".join(v for n, v in pairs if n.lower() == "via")
    out["Via"] = f"{prior_via}, {VIA}" if prior_via else VIA
    prior_xff = ", ".join(v for n, v in pairs if n.lower() == "x-forwarded-for")
    if remote:
        out["X-Forwarded-For"] = f"{prior_xff}, {remote}" if prior_xff else remote
    elif prior_xff:
        out["X-Forwarded-For"] = prior_xff
    return out


def fill_request(headers: Iterable[tuple[str, str]], remote: str | None) -> dict[str, str]:
    """The fields of a fill made for this client: `end_to_end` without the client's
    validators, Range or body framing."""
    return {
        n: v for n, v in end_to_end(headers, remote).items() if n.lower() not in _NOT_ON_FILL
    }


def fill_headers(
    mode: str, headers: Iterable[tuple[str, str]], remote: str | None
) -> dict[str, str]:
    """What a fill made for this request sends upstream, and so the fields its Vary
    variant is keyed and selected by (`edge.vary`): in proxy mode the first requester's
    fields (`fill_request`, as nginx does) and our Surrogate-Capability (RFC 9213 targets
    us by it); appliance fills stay bare, so every request selects their one variant."""
    if mode != "proxy":
        return {"Via": VIA}
    out = fill_request(headers, remote)
    prior = out.get("Surrogate-Capability")
    out["Surrogate-Capability"] = (
        f"{prior}, {targeted.CAPABILITY}" if prior else targeted.CAPABILITY
    )
    return out
