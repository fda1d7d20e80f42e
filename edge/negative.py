"""A short per-key memory of non-200 answers the upstream lets a cache keep.

A URL that keeps failing (a 404 page with max-age, a 5xx that says how long it holds)
would otherwise cost an upstream request, with retries, for every client that asks; so
would a redirect or a 204. Only what `freshness.negative_lifetime` allows is kept (RFC
9111 §3: explicit freshness, or a heuristic for the heuristically cacheable 2xx/3xx; no
per-user answers), for seconds, in memory, small bodies only, bounded in count; it is
per worker and lost on restart, which is harmless for answers this short-lived.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

#: Error bodies larger than this are relayed, never kept.
BODY_MAX: Final = 64 * 1024
ENTRIES_MAX: Final = 10_000


@dataclass(frozen=True, slots=True)
class Negative:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    response_time: float
    expires: float


class NegativeCache:
    def __init__(self) -> None:
        self._items: OrderedDict[str, Negative] = OrderedDict()

    def get(self, key: str, now: float) -> Negative | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item.expires <= now:
            del self._items[key]
            return None
        return item

    def put(self, key: str, item: Negative) -> None:
        self._items[key] = item
        self._items.move_to_end(key)
        while len(self._items) > ENTRIES_MAX:
            self._items.popitem(last=False)

    def drop(self, key: str) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
