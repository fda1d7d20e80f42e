"""Bearer tokens and roles, pure (no I/O).

Tokens are 256-bit random strings, so a plain SHA-256 is enough to store them: there is
nothing to brute-force that a slow KDF would protect (RFC 6750 §5.2 asks that bearer
tokens be unguessable; ours are). The database only ever holds the hash, and a token is
shown once, when it is created.

Every appliance token is bound to one appliance id (its *subject*) and can only register,
beat for and read the fill manifest of that appliance. An appliance token without a
subject (made before binding was required) is refused: otherwise any one appliance could
speak for all of them.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Final, Literal, get_args

from vcdn.errors import ConfigError, Forbidden, Unauthorized

Role = Literal["operator", "appliance", "packager", "steering"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
TOKEN_PREFIX: Final = "vcdn_"
MAX_TOKEN_CHARS: Final = 256
UNBOUND: Final = (
    "This appliance token is bound to no appliance and is no longer accepted; an operator "
    "enrols the appliance (vcdn control appliance enroll) and gives it the token printed."
)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a role, and for bound appliance tokens the appliance id."""

    role: Role
    subject: str | None = None


def new_token() -> str:
    """A fresh high-entropy token, prefixed so that secret scanners recognise it."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise ConfigError(f"Unknown role {role!r}; roles are {', '.join(ROLES)}.")
    return role  # type: ignore[return-value]


def parse_bootstrap(text: str) -> dict[str, Principal]:
    """``"operator:tok1,appliance:tok2"`` → {sha256(token): Principal}.

    For embedded and demo use: tokens given in the environment work without a database
    entry. ``appliance@a1:tok`` binds the token to appliance ``a1``; an appliance token
    must be bound.
    """
    out: dict[str, Principal] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        who, colon, token = item.partition(":")
        role, _, subject = who.partition("@")
        if not colon or not token:
            raise ConfigError(
                "Bootstrap tokens must look like 'role:token[,role:token]' "
                f"(roles: {', '.join(ROLES)}); one entry has no ':token'."
            )
        if len(token) < 16:
            raise ConfigError(f"A bootstrap token for role {role!r} is shorter than 16 characters.")
        if role == "appliance" and not subject:
            raise ConfigError(
                "A bootstrap appliance token must be bound to one appliance: "
                "'appliance@ID:token' (better: enrol it with 'vcdn control appliance enroll')."
            )
        if subject and role != "appliance":
            raise ConfigError(f"Only appliance tokens are bound to an id, not {role!r} ones.")
        out[hash_token(token)] = Principal(check_role(role), subject or None)
    return out


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer ...`` header (RFC 6750 §2.1)."""
    if not header:
        raise Unauthorized("This endpoint needs an 'Authorization: Bearer TOKEN' header.")
    scheme, _, token = header.strip().partition(" ")
    # RFC 9110 §11.1: the auth scheme is case-insensitive.
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
        raise Unauthorized("The Authorization header must be 'Bearer TOKEN'.")
    return token


def authorize(
    principal: Principal | None, allowed: frozenset[str], appliance: str | None = None
) -> Principal:
    """Raise Unauthorized/Forbidden unless `principal` may act (on `appliance`, if given)."""
    if principal is None:
        raise Unauthorized("The bearer token is not valid.")
    if principal.role not in allowed:
        raise Forbidden(
            f"The {principal.role} role may not do this; allowed: {', '.join(sorted(allowed))}."
        )
    if principal.role == "appliance" and principal.subject is None:
        raise Forbidden(UNBOUND)
    if appliance is not None and principal.role == "appliance" and principal.subject != appliance:
        raise Forbidden(
            f"This token belongs to appliance {principal.subject!r}, not {appliance!r}."
        )
    return principal
