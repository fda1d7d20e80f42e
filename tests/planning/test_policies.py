"""Eviction policies (edge.policies): order, pins, S3-FIFO admission, and the contract."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.policies import LFU, LRU, POLICIES, S3FIFO, PopularityAware, make_policy
from edge.policies.base import EvictionPolicy
from vcdn.errors import ConfigError


def evict(policy: EvictionPolicy, need: int, sizes: dict, protect: object = None) -> list:
    """Consume `victims` the way the store does: remove each yielded key until `need` bytes."""
    out = []
    for key in policy.victims(need):
        if key == protect:
            continue
        out.append(key)
        policy.on_remove(key)
        need -= sizes.pop(key)
        if need <= 0:
            break
    return out


def fill(policy: EvictionPolicy, keys: Iterable[str], size: int = 10,
         pinned: Iterable[str] = ()) -> dict[str, int]:
    pins = set(pinned)
    sizes = {}
    for k in keys:
        policy.on_insert(k, size, k in pins)
        sizes[k] = size
    return sizes


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_pinned_objects_are_evicted_last(name: str) -> None:
    policy = make_policy(name)
    sizes = fill(policy, ["p1", "a", "p2", "b", "c"], pinned=["p1", "p2"])
    for _ in range(3):
        policy.on_access("p1")
        policy.on_access("p2")
    order = evict(policy, 50, sizes)
    assert set(order[:3]) == {"a", "b", "c"}
    assert order[3:] == ["p1", "p2"]  # least recently used pinned first
    assert len(policy) == 0


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_a_protected_key_is_skipped_without_looping(name: str) -> None:
    policy = make_policy(name)
    sizes = fill(policy, ["a", "b", "c"])
    assert evict(policy, 30, sizes, protect="a") == [k for k in evict_order(name) if k != "a"]
    assert len(policy) == 1


def evict_order(name: str) -> list[str]:
    return ["a", "b", "c"]


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_unpinning_makes_an_object_evictable_again(name: str) -> None:
    policy = make_policy(name)
    sizes = fill(policy, ["p", "a"], pinned=["p"])
    policy.on_insert("p", 10, False)
    assert "p" in evict(policy, 20, sizes)


@pytest.mark.parametrize(
    ("accesses", "expected"),
    [
        ([], ["a", "b", "c", "d"]),
        (["a"], ["b", "c", "d", "a"]),
        (["b", "a"], ["c", "d", "b", "a"]),
        (["d", "c", "b", "a"], ["d", "c", "b", "a"]),
    ],
)
def test_lru_order(accesses: list[str], expected: list[str]) -> None:
    policy = LRU()
    sizes = fill(policy, "abcd")
    for k in accesses:
        policy.on_access(k)
    assert evict(policy, 40, sizes) == expected


@pytest.mark.parametrize(
    ("accesses", "expected"),
    [
        ([], ["a", "b", "c", "d"]),  # equal counts: least recently used first
        (["a", "a", "b"], ["c", "d", "b", "a"]),
        (["d", "d", "d", "a"], ["b", "c", "a", "d"]),
    ],
)
def test_lfu_order(accesses: list[str], expected: list[str]) -> None:
    policy = LFU()
    sizes = fill(policy, "abcd")
    for k in accesses:
        policy.on_access(k)
    assert evict(policy, 40, sizes) == expected


@pytest.mark.parametrize(("name", "kept_at_least", "kept_at_most"),
                         [("s3fifo", 80, 100), ("lru", 0, 0)])
def test_a_burst_of_one_off_misses_does_not_flush_objects_with_hits(
    name: str, kept_at_least: int, kept_at_most: int
) -> None:
    """S3-FIFO's admission: 300 one-off objects cycle through the small queue, costing
    at most about its size (10%) of the 100 objects that were hit; LRU loses them all."""
    policy = make_policy(name)
    sizes = fill(policy, [f"old{i}" for i in range(100)])
    for i in range(100):
        policy.on_access(f"old{i}")
    for i in range(300):
        policy.on_insert(f"new{i}", 10, False)
        sizes[f"new{i}"] = 10
        evict(policy, 10, sizes)
    kept = sum(f"old{i}" in sizes for i in range(100))
    assert kept_at_least <= kept <= kept_at_most
    assert len(policy) == 100


def test_s3fifo_a_key_remembered_in_the_ghost_skips_probation() -> None:
    policy = S3FIFO()
    sizes = fill(policy, ["a", "b"])
    assert evict(policy, 10, sizes) == ["a"]
    assert policy.in_ghost("a")
    policy.on_insert("a", 10, False)
    assert policy.queue_of("a") == "main"
    assert not policy.in_ghost("a")


def test_s3fifo_main_gives_a_hit_object_another_round() -> None:
    """Lazy promotion: at M's tail an object with hits left is reinserted, one hit fewer,
    so the older but hit `a` outlives `b`."""
    policy = S3FIFO()
    sizes: dict[str, int] = {}
    for key in ("a", "b"):  # via the ghost, straight into main
        sizes.update(fill(policy, [key]))
        assert evict(policy, 10, sizes) == [key]
        sizes.update(fill(policy, [key]))
        assert policy.queue_of(key) == "main"
    policy.on_access("a")
    assert evict(policy, 10, sizes) == ["b"]
    assert evict(policy, 10, sizes) == ["a"]


def test_s3fifo_small_queue_ratio_is_validated() -> None:
    with pytest.raises(ValueError, match="small_ratio"):
        S3FIFO(small_ratio=1.5)


def test_popularity_policy_is_s3fifo_with_pins_and_unpinned_objects_enter_main() -> None:
    policy = PopularityAware()
    sizes = fill(policy, ["p"], pinned=["p"])
    assert policy.queue_of("p") == "pinned"
    policy.on_insert("p", 10, False)
    assert policy.queue_of("p") == "main"
    assert evict(policy, 10, sizes) == ["p"]


def test_an_unknown_policy_name_is_a_config_error_listing_the_choices() -> None:
    with pytest.raises(ConfigError, match="lfu, lru, popularity, s3fifo"):
        make_policy("mru")


ops = st.lists(
    st.tuples(
        st.sampled_from(["insert", "access", "remove", "evict"]),
        st.integers(0, 15),
        st.integers(1, 50),
        st.booleans(),
    ),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(POLICIES)), script=ops)
def test_policy_contract_under_random_operations(name: str, script: list) -> None:
    """Victims are tracked keys, each offered once per call, unpinned before pinned; the
    policy's length follows the store's; asking for everything empties it."""
    policy = make_policy(name)
    sizes: dict[int, int] = {}
    pinned: set[int] = set()
    for op, key, size, pin in script:
        if op == "insert":
            policy.on_insert(key, size, pin)
            sizes[key] = size
            (pinned.add if pin else pinned.discard)(key)
        elif op == "access" and key in sizes:
            policy.on_access(key)
        elif op == "remove":
            policy.on_remove(key)
            sizes.pop(key, None)
            pinned.discard(key)
        elif op == "evict":
            seen = []
            need = size
            for victim in policy.victims(need):
                assert victim in sizes and victim not in seen
                if victim in pinned:
                    assert not (set(sizes) - pinned - set(seen))
                seen.append(victim)
                policy.on_remove(victim)
                need -= sizes.pop(victim)
                pinned.discard(victim)
                if need <= 0:
                    break
            assert need <= 0 or not sizes
        assert len(policy) == len(sizes)
    everything = sum(sizes.values())
    for victim in policy.victims(everything):
        policy.on_remove(victim)
        sizes.pop(victim)
    assert len(policy) == 0 and not sizes
