"""The fast path's memory of appliance URLs (`edge.routing`), in two halves.

A player brings a token from steering and then asks for many URLs with it (playlists,
segments, parts), and a new player brings a new token for the same URLs. Remembering
whole URLs would make every new (token, path) pair the slow path again: routing, path
checks and key building besides the token check. So the rest of a URL,
``{title}/{path}[?query]``, is remembered with its cache key (it does not depend on the
token), and a token with the title it was verified for and until when (it does not
depend on the path): a URL with a new token costs its HMAC check and the normal hit, and a new
segment with a known token two dictionary lookups. A URL seen before (a playlist polled,
a segment asked for again) is one lookup of the whole target.

What the memory holds was decided by the router's own pieces, so it answers exactly as
`edge.routing.resolve` would: a token is taken from memory only for the title it was
verified for and only until it (or its key) expires; a token that failed is not kept, so
it fails again on the full path, which answers 403 and logs why.
"""

from __future__ import annotations

import math
from typing import Final

from edge.keys import video_path
from edge.llhls import fast_query
from edge.routing import check_token, place, split
from edge.store import object_key
from vcdn import tokens
from vcdn.errors import VcdnError

#: Entries per half; a full half is cleared (its entries are cheap to make again).
MAX_ENTRIES: Final = 100_000
_UNSEEN: Final = ("", "")


class FastRoutes:
    """Per Edge, since what a URL may reach depends on this edge's keys and auth."""

    __slots__ = ("_auth", "_tails", "_tokens", "_urls")

    def __init__(self, auth: str) -> None:
        self._auth = auth
        #: Whole raw targets already routed → (cache key, title, valid until): a player
        #: polling its playlist, or asking for a segment again, costs one lookup.
        self._urls: dict[str, tuple[str, str, float]] = {}
        #: ``{title}/{path}[?query]`` → (cache key, title), or None: the application's.
        self._tails: dict[str, tuple[str, str] | None] = {}
        #: ``{token}/{title}`` verified → valid until (a float, not a tuple: an entry made
        #: for every new token is then nothing the cyclic garbage collector tracks).
        self._tokens: dict[str, float] = {}

    def forget_tokens(self) -> None:
        """New signing keys: what the old ones verified is verified no more."""
        self._tokens.clear()
        self._urls.clear()

    def route(
        self, raw: str, keys: tokens.KeyRing, now: float
    ) -> tuple[str, str, float] | None:
        """(cache key, title, valid until) of the raw target (query included) of an
        appliance URL whose token verifies (or that is unsigned), else None: the
        application answers (403 with the reason logged, 400, 404)."""
        urls = self._urls
        known = urls.get(raw)
        if known is not None:
            return known
        routed = self._resolve(raw, keys, now)
        if routed is not None:
            if len(urls) >= MAX_ENTRIES:
                urls.clear()
            urls[raw] = routed
        return routed

    def known(self, raw: str) -> tuple[str, str, float] | None:
        """`route` from memory alone: None unless the fast path verified both halves."""
        routed = self._urls.get(raw)
        return routed if routed is not None else self._resolve(raw, None, 0.0)

    def _resolve(
        self, raw: str, keys: tokens.KeyRing | None, now: float
    ) -> tuple[str, str, float] | None:
        """`route` below the whole-target memory. Without `keys` only what is remembered
        answers: an unseen tail or token is None, and nothing is learnt."""
        found = split(raw, self._auth)
        if found is None:
            return None
        token, tail = found
        placed = self._tails.get(tail, _UNSEEN)
        if placed is _UNSEEN:
            if keys is None:
                return None
            placed = _place(tail)
            if len(self._tails) >= MAX_ENTRIES:
                self._tails.clear()
            self._tails[tail] = placed
        if placed is None:
            return None
        key, title = placed
        if token is None:
            return key, title, math.inf
        signs = f"{token}/{title}"  # one spelling: neither holds a "/"
        seen = self._tokens.get(signs)
        if seen is not None:
            return key, title, seen
        if keys is None:
            return None
        try:
            valid_until = check_token(token, title, keys, now)
        except VcdnError:
            return None
        if len(self._tokens) >= MAX_ENTRIES:
            self._tokens.clear()
        self._tokens[signs] = valid_until
        return key, title, valid_until


def _place(tail: str) -> tuple[str, str] | None:
    """(cache key, title) of ``{title}/{path}[?query]``, or None if the application must
    answer it: LL-HLS directives are part of the key (`edge.llhls.fast_query`), any other
    query, a bad title or path are the application's."""
    rest, suffix = fast_query(tail)
    if suffix is None:
        return None
    try:
        title, path = place(rest)
        return object_key(title, video_path(path)) + suffix, title
    except VcdnError:
        return None
