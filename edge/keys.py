"""Cache keys and the upstream targets they stand for, pure: one is a function of the other.

A shared cache that keys an object under one name and fetches it under another can be
made to store anything under any key (a decoded ``%3F`` turned into a query upstream, a
``/a/../b`` the HTTP client normalised). So every key here is built together with the
exact request target sent upstream:

* Appliance mode (`/s/{token}/{title}/{path}`, `/v/{title}/{path}`): the path is decoded
  and checked once (`vcdn.httpserve.paths.safe_relpath`); a decoded ``?`` or ``#`` is
  refused, since no packager writes such names and upstream they would start a query or
  a fragment. The key is ``title/path`` and the target is that path re-encoded one
  canonical way (`vcdn.peering.origin_target`), so ``%62ig.mp4`` and ``big.mp4`` are one object and
  one fetch. The query of a video URL is never part of the key nor sent upstream.
* Proxy mode: the target is the request target exactly as received (the HTTP client is
  told not to re-encode it); the key is that target, with the query dropped from both
  when the query policy is ``ignore``.
"""

from __future__ import annotations

from typing import Literal

from vcdn.errors import ClientError
from vcdn.httpserve.paths import safe_relpath

QueryPolicy = Literal["keep", "ignore"]


def video_path(rest: str) -> str:
    """The decoded relative path of a video URL's tail (raw, before any '?'), or raise."""
    path = safe_relpath(rest)
    if "?" in path or "#" in path:
        raise ClientError(
            f"Refusing path {rest[:200]!r}: a percent-encoded '?' or '#' would change the "
            "request sent upstream; video file names never contain them."
        )
    return path


def proxy_target(raw: str, policy: QueryPolicy) -> str:
    """Proxy mode: the key, which is also the target sent upstream, of a raw target."""
    if not raw.startswith("/") or "\x00" in raw:
        raise ClientError("The request target must be an absolute path.")
    if "#" in raw:
        # RFC 9110 §7.1: a fragment is never part of a request target.
        raise ClientError("The request target must not contain a fragment ('#').")
    if policy == "ignore":
        return raw.partition("?")[0]
    return raw
