"""The one router of appliance URLs, with the token check; pure.

``/s/{token}/{title}/{path}`` (signed, `vcdn.tokens`) and, with ``auth = "none"``,
``/v/{title}/{path}``. Both the hit planner's owner (`edge.fastpath`, which remembers
a verified route until its token or key expires) and the application (`edge.app`, for
everything the planner left to it) route through `resolve`, so what a URL may reach is
decided once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vcdn import tokens
from vcdn.errors import NotFound
from vcdn.titles import is_valid_title


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


def resolve(
    target: str, keys: tokens.KeyRing, auth: str, now: float, *, verify: bool = True
) -> Route:
    """Route `target` (the raw path, without its query). Raises `NotFound` for a path
    that is no appliance URL or names no valid title, `BadToken` (403) for a token that
    does not verify; `verify=False` skips the token check (a CORS preflight)."""
    parts = target.split("/", 4)
    if len(parts) == 5 and parts[1] == "s":
        _, _, token, title, rest = parts
        _check_title(title)
        valid_until = math.inf
        if verify:
            kid = tokens.verify(token, title, keys, now).key_id
            # Remembered until the token or its key expires, whichever is first.
            valid_until = min(float(tokens.parse(token).expires), keys.valid_until(kid))
        return Route(title, rest, token, valid_until)
    if len(parts) >= 4 and parts[1] == "v" and auth == "none":
        _, _, title, rest = target.split("/", 3)
        _check_title(title)
        return Route(title, rest, "", math.inf)
    raise NotFound("No such URL on this edge: /s/{token}/{title}/{path} or /v/{title}/{path}.")


def _check_title(title: str) -> None:
    if not is_valid_title(title):
        raise NotFound(f"No title named {title[:64]!r}.")
