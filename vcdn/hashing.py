"""Rendezvous (highest-random-weight) hashing, shared by steering and fill planning.

Steering ranks a site's appliances for a title with `rank`; the fill planner places a
title's copies on the first appliances of the same ranking. Using one function is what
makes steered requests land where the content already is.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence


def score(key: str, node: str, weight: float = 1.0) -> float:
    """Weighted rendezvous score (Schindelhauer & Schomaker's logarithmic method)."""
    digest = hashlib.blake2b(f"{node}\0{key}".encode(), digest_size=8).digest()
    # Map to (0, 1): never exactly 0 or 1, so the log is finite.
    u = (int.from_bytes(digest, "big") + 0.5) / 2.0**64
    return -weight / math.log(u)


def rank(key: str, nodes: Iterable[str], weights: dict[str, float] | None = None) -> list[str]:
    """Nodes ordered best-first for `key`; stable when nodes join or leave."""
    w = weights or {}
    return sorted(nodes, key=lambda n: score(key, n, w.get(n, 1.0)), reverse=True)


def top(key: str, nodes: Sequence[str], k: int) -> list[str]:
    """The `k` nodes that hold `key`'s copies."""
    return rank(key, nodes)[: max(0, k)]
