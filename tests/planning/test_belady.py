"""The simulator's offline bound: furthest next request first, bypass when nothing is
further away."""

from __future__ import annotations

from bench.cachesim.belady import NEVER, Belady


def insert(policy: Belady, key: str, next_request: int, size: int = 10) -> None:
    policy.see(next_request)
    policy.on_insert(key, size, False)


def test_the_object_asked_for_furthest_in_the_future_goes_first() -> None:
    b = Belady()
    insert(b, "soon", 5)
    insert(b, "late", 50)
    insert(b, "mid", 20)
    order = []
    for key in b.victims(30):
        order.append(key)
        b.on_remove(key)
    assert order == ["late", "mid", "soon"]


def test_a_hit_updates_the_next_request() -> None:
    b = Belady()
    insert(b, "a", 5)
    insert(b, "b", 10)
    b.see(100)
    b.on_access("a")  # a is now next asked for at 100
    key = next(b.victims(10))
    assert key == "a"


def test_bypass_an_object_never_asked_again_or_later_than_everything_cached() -> None:
    b = Belady()
    insert(b, "a", 30)
    b.see(NEVER)
    assert not b.admits()
    b.see(40)
    assert not b.admits()
    b.see(10)
    assert b.admits()
    assert Belady().admits() is False  # nothing seen yet: NEVER


def test_a_kept_victim_ends_the_walk_and_stays() -> None:
    b = Belady()
    insert(b, "a", 30)
    insert(b, "b", 20)
    assert list(b.victims(100)) == ["a"]  # the caller removed nothing
    assert len(b) == 2
    assert next(b.victims(10)) == "a"
