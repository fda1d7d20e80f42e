"""Eviction policies for the edge store, by setting name.

``lru`` is the store's baseline (`edge.policies.lru.LRU`); ``lfu`` and ``s3fifo`` are the
classic alternatives; ``popularity`` is the appliance default (manifest-pinned last,
S3-FIFO admission for on-demand objects). All share the store's four-call contract
(`edge.policies.base.EvictionPolicy`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from edge.policies.base import EvictionPolicy
from edge.policies.lfu import LFU
from edge.policies.lru import LRU
from edge.policies.popularity import PopularityAware
from edge.policies.s3fifo import S3FIFO
from vcdn.errors import ConfigError

POLICIES: Final[dict[str, Callable[[], EvictionPolicy]]] = {
    "lru": LRU,
    "lfu": LFU,
    "s3fifo": S3FIFO,
    "popularity": PopularityAware,
}
DEFAULT: Final = "popularity"


def make_policy(name: str) -> EvictionPolicy:
    """A fresh policy for the setting `name`; ConfigError names the choices."""
    factory = POLICIES.get(name)
    if factory is None:
        raise ConfigError(
            f"Unknown eviction policy {name!r}; choose one of {', '.join(sorted(POLICIES))}."
        )
    return factory()


__all__ = [
    "DEFAULT",
    "LFU",
    "LRU",
    "POLICIES",
    "S3FIFO",
    "EvictionPolicy",
    "PopularityAware",
    "make_policy",
]
