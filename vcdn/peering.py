"""The peer protocol: how a cache asks another cache of its site for an object, and how a
fill names an object at the origin.

Both the edge (a miss on demand) and the appliance's fill loop (a planned fill) ask peers
first, the same way: the peer's own signed-URL path ``/s/{token}/{title}/{path}``, with a
short-lived token signed with the site's current key, so the peer's token check admits
only its site; and ``Cache-Control: only-if-cached`` (RFC 9111 §5.2.1.7), so a peer
answers from its cache or with 504 and never fills from the origin on another's behalf.
Without a signing key (a lab) the peer is asked ``/v/{title}/{path}``, the path the
origin serves.

The path is percent-encoded one canonical way, so one object is one request target and
one cache key wherever it is asked for (`edge.keys`).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from vcdn.tokens import KeyRing

#: A peer's token only has to outlive one fill request.
TOKEN_TTL: Final = 300
#: What a request to a peer carries besides the client's headers.
HEADERS: Final = {"Cache-Control": "only-if-cached"}
#: Path bytes left as they are when re-encoding (RFC 3986 pchar minus '%'): everything
#: else is percent-encoded, so the canonical target is a function of the decoded path.
_SAFE: Final = "/!$&'()*+,;=:@"


def origin_target(title: str, path: str) -> str:
    """The one request target of ``/v/{title}/{path}`` (canonical percent-encoding)."""
    return f"/v/{title}/{quote(path, safe=_SAFE)}"


def peer_target(token: str, title: str, path: str) -> str:
    """The signed request target of `path` of `title` at a peer."""
    return f"/s/{token}/{title}/{quote(path, safe=_SAFE)}"


def token(keys: KeyRing | None, title: str, now: float) -> str | None:
    """The token a peer request for `title` carries; None without a key in service."""
    return keys.sign_current(title, now, TOKEN_TTL) if keys else None


def target(keys: KeyRing | None, title: str, path: str, now: float) -> str:
    """What to ask a peer for: signed when a key is in service, else the plain path."""
    signed = token(keys, title, now)
    return peer_target(signed, title, path) if signed else origin_target(title, path)
