"""Prefix authority, pure: which client prefixes an appliance may claim.

Steering sends a client to the appliance whose prefix holds its address (longest match),
so a prefix is a claim on other people's users. The operator approves, at enrolment,
the prefixes each appliance may serve; an appliance's registration (configured or
learned over BGP) must lie inside them, and nobody may claim a default route or a
prefix wider than the configured limit, which would capture a whole region at once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Final

from vcdn.errors import ClientError, Forbidden

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_MAX_V4: Final = 8
DEFAULT_MAX_V6: Final = 19


def parse_prefix(text: str, where: str) -> Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ClientError(f"'{where}' is not an IP prefix like 192.0.2.0/24") from None


def check_width(
    prefixes: Sequence[str], max_v4: int = DEFAULT_MAX_V4, max_v6: int = DEFAULT_MAX_V6,
    field: str = "prefixes",
) -> list[Network]:
    """Parse every prefix; refuse default routes and prefixes wider than the limits."""
    out: list[Network] = []
    for i, text in enumerate(prefixes):
        net = parse_prefix(text, f"{field}[{i}]")
        limit = max_v4 if net.version == 4 else max_v6
        if net.prefixlen == 0:
            raise ClientError(
                f"'{field}[{i}]' {text[:50]!r} is a default route: it would send every "
                "client to one appliance, and is never accepted"
            )
        if net.prefixlen < limit:
            raise ClientError(
                f"'{field}[{i}]' {text[:50]!r} is wider than /{limit}, the widest IPv{net.version} "
                f"client prefix this control plane accepts (setting max_prefix_v{net.version})"
            )
        out.append(net)
    return out


def inside(net: Network, approved: Sequence[Network]) -> bool:
    return any(net.version == a.version and net.subnet_of(a) for a in approved)  # type: ignore[arg-type]


def check_approved(appliance: str, claimed: Sequence[Network], approved: Sequence[str]) -> None:
    """Every claimed prefix lies inside one the operator approved for `appliance`."""
    allowed = [parse_prefix(p, "approved prefix") for p in approved]
    for net in claimed:
        if not inside(net, allowed):
            shown = ", ".join(approved) if approved else "none"
            raise Forbidden(
                f"Prefix {net} is outside the prefixes approved for appliance {appliance!r} "
                f"({shown}); an operator can change them with PUT /api/v1/enrollments/{appliance}."
            )


def keep_approved(prefixes: Sequence[str], approved: Sequence[str]) -> tuple[list[str], list[str]]:
    """(kept, dropped): `prefixes` split by whether they lie inside `approved`."""
    allowed = [parse_prefix(p, "approved prefix") for p in approved]
    kept: list[str] = []
    dropped: list[str] = []
    for text in prefixes:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            dropped.append(text)
            continue
        (kept if inside(net, allowed) else dropped).append(text)
    return kept, dropped
