"""The one router of appliance URLs, with the token check; pure.

``/s/{token}/{title}/{path}`` (signed, `vcdn.tokens`) and, with ``auth = "none"``,
``/v/{title}/{path}``. Both the hit planner's owner (`edge.fastpath`, through
`edge.fastroutes`, which remembers the two halves of a URL apart) and the application
(`edge.app`, for everything the planner left to it) route with the pieces here, so what a
URL may reach is decided once: `split` (which form, and its token), `place` (the title
and path of the rest) and `check_token`, put together by `resolve`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vcdn import tokens
from vcdn.errors import NotFound
from vcdn.titles import is_valid_title

_NO_SUCH_URL = "No such URL on this edge: /s/{token}/{title}/{path} or /v/{title}/{path}."


@dataclass(frozen=True, slots=True)
class Route:
    """Where an appliance URL leads: its title, the rest of its path as sent (not yet
    checked as a video path), its token ("" unsigned), and until when it is valid."""

    title: str
    rest: str
    token: str
    valid_until: float

    @property
    def signed(self) -> bool:
        """A valid token is steering's word that the title is in the catalog."""
        return bool(self.token)


def split(target: str, auth: str) -> tuple[str | None, str] | None:
    """(token, ``{title}/{path}`` as sent) of an appliance URL, the token None for an
    unsigned one; None for a target that is neither form (or unsigned, with tokens
    required). The token is not checked here: it depends on the title (`check_token`)."""
    if target.startswith("/s/"):
        token, slash, tail = target[3:].partition("/")
        return (token, tail) if slash else None
    if target.startswith("/v/") and auth == "none":
        return None, target[3:]
    return None


def place(tail: str) -> tuple[str, str]:
    """(title, the rest of its path as sent) of ``{title}/{path}``; raises `NotFound` for
    no valid title."""
    title, slash, rest = tail.partition("/")
    if not slash:
        raise NotFound(_NO_SUCH_URL)
    if not is_valid_title(title):
        raise NotFound(f"No title named {title[:64]!r}.")
    return title, rest


def check_token(token: str, title: str, keys: tokens.KeyRing, now: float) -> float:
    """Until when `token` lets its bearer fetch `title`: its own expiry or its key's,
    whichever is first. Raises `BadToken` (403) for one that does not verify."""
    parsed = tokens.verify(token, title, keys, now)
    return min(float(parsed.expires), keys.valid_until(parsed.key_id))


def resolve(
    target: str, keys: tokens.KeyRing, auth: str, now: float, *, verify: bool = True
) -> Route:
    """Route `target` (the raw path, without its query). Raises `NotFound` for a path
    that is no appliance URL or names no valid title, `BadToken` (403) for a token that
    does not verify; `verify=False` skips the token check (a CORS preflight)."""
    found = split(target, auth)
    if found is None:
        raise NotFound(_NO_SUCH_URL)
    token, tail = found
    title, rest = place(tail)
    if token is None:
        return Route(title, rest, "", math.inf)
    valid_until = check_token(token, title, keys, now) if verify else math.inf
    return Route(title, rest, token, valid_until)
