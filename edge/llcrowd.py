"""One answer for a crowd of players asking the same LL-HLS question at once.

At the live edge every low-latency player holds a blocking playlist request for the next
part open (`edge.llhls`), and when the part arrives they are all answered at once. On the
normal miss path each of them costs a request handler, a response object, a head of its
own and two wake-ups (head, then body), and the answers of the last players leave the
edge behind the next requests of the first ones. Instead, the requests that find the
fill of their key in flight in this worker are answered together, in one of two shapes:

* a blocking playlist request joins a crowd answered with one serialisation for all, in
  the turn its fill lands (`edge.llcrowd_playlist`);
* a request for the preload-hinted part, while the origin still writes it, follows one
  stream whose head and chunks are framed once for all (`edge.llcrowd_part`).

What they share (the Cache-Status, the bookkeeping) is `edge.llcrowd_shared`. Anything
unusual takes the normal path (`edge.app.serve`): a request with a range, conditional or
cache directives; a fill that fails, varies, or is not storable (the origin's 400 or 503,
which the normal path keeps and shares among the crowd).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from edge.llcrowd_part import PartStreams
from edge.llcrowd_playlist import PlaylistCrowds
from edge.llhls import blocking_key

if TYPE_CHECKING:
    from edge.engine import Edge

#: Request fields that need the normal path's planner or freshness judgement.
NOT_PLAIN: Final = (
    "Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since",
    "If-Unmodified-Since", "Cache-Control", "Pragma",
)


def plain(headers: Mapping[str, str]) -> bool:
    return not any(name in headers for name in NOT_PLAIN)


class Crowds:
    """The crowds of one edge worker, by cache key: blocking playlists and growing parts."""

    def __init__(self, edge: Edge) -> None:
        self._edge = edge
        self.playlists = PlaylistCrowds(edge)
        self.parts = PartStreams(edge)

    @property
    def renders(self) -> int:
        """Answers (or stream heads) serialised for crowds (tests, `vcdn_edge_*`)."""
        return self.playlists.renders + self.parts.renders

    @property
    def answered(self) -> int:
        """Members answered by a crowd."""
        return self.playlists.answered + self.parts.answered

    def _key_of(self, raw: str, headers: Mapping[str, str]) -> tuple[str, str] | None:
        """(key, title) of a plain request whose route the fast path already verified
        (`Edge.fast_routes`), else None."""
        route = self._edge.fast_routes.known(raw)
        if route is None:
            return None
        key, title, expires = route
        if expires < time.time() or not plain(headers):
            return None
        return key, title

    async def join_any(
        self, raw: str, headers: Mapping[str, str], transport: asyncio.Transport
    ) -> int | None:
        """`PlaylistCrowds.join` for a blocking playlist request, `PartStreams.follow` for
        a growing fill."""
        found = self._key_of(raw, headers)
        if found is None:
            return None
        key, title = found
        if blocking_key(key):
            return await self.playlists.join(key, title, transport)
        return await self.parts.follow(key, title, transport)

    async def close(self) -> None:
        await self.playlists.close()
        await self.parts.close()
