"""LRU order with pinned keys last."""

from __future__ import annotations

from edge.policies import make_policy
from edge.policies.lru import LRU


def test_lru_offers_least_recent_first_and_pinned_last() -> None:
    lru = LRU()
    for key, pinned in (("a", False), ("p", True), ("b", False), ("c", False)):
        lru.on_insert(key, 10, pinned)
    lru.on_access("a")
    assert list(lru.victims(1000)) == ["b", "c", "a", "p"]
    assert list(lru.victims(15)) == ["b", "c"]


def test_remove_and_repin() -> None:
    lru = make_policy("lru")
    lru.on_insert("a", 10, False)
    lru.on_insert("b", 10, False)
    lru.on_insert("a", 10, True)  # pin change re-inserts
    lru.on_remove("b")
    assert list(lru.victims(100)) == ["a"] and len(lru) == 1
