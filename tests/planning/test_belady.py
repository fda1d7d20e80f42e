"""Belady in the simulator: furthest next request first; an object that fits is stored,
one that does not only if enough cached bytes are asked for later than it."""

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


def test_an_object_that_fits_in_the_free_space_is_always_admitted() -> None:
    """The bug the optimum had: it bypassed objects that fit without evicting anything."""
    b = Belady()
    insert(b, "a", 30)
    b.see(NEVER)
    assert b.admits(10, free=10)
    b.see(40)
    assert b.admits(5, free=10)
    assert Belady().admits(1, free=1)


def test_without_room_admit_only_if_enough_bytes_are_asked_for_later() -> None:
    b = Belady()
    insert(b, "a", 30, size=10)
    insert(b, "b", 20, size=10)
    b.see(NEVER)
    assert not b.admits(5, free=0)
    b.see(40)
    assert not b.admits(5, free=0)  # everything cached is asked for sooner
    b.see(25)
    assert b.admits(10, free=0)  # "a" (30) is later: evicting it makes room
    assert not b.admits(15, free=0)  # "b" (20) is sooner than 25: not enough
    b.see(10)
    assert b.admits(20, free=0)
    assert not b.admits(21, free=0)
    assert [k for k in b.victims(10)] == ["a"]  # admits() left the heap as it was


def test_a_kept_victim_ends_the_walk_and_stays() -> None:
    b = Belady()
    insert(b, "a", 30)
    insert(b, "b", 20)
    assert list(b.victims(100)) == ["a"]  # the caller removed nothing
    assert len(b) == 2
    assert next(b.victims(10)) == "a"
