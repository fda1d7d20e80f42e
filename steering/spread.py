"""The DNS spread: weighted rendezvous (highest random weight) of a client network over a
site's appliances, weighted by their spare capacity.

A DNS query has no title, so `vcdn.hashing` (titles → where the fill put the bytes) has
nothing to say about it; this spread only has to be stable and proportional, and cheap,
since the compiled mapping computes it for every uncached query. Each appliance has a
64-bit seed (XXH3 of its id: the same in every process and worker, unlike Python's
randomised `hash`); the client network's score on an appliance is

    (log2(XXH3_64(key, seed) + 0.5) - 64) / weight

that is log2(u) / w for u = (h + 1/2) / 2^64 in (0, 1]: Schindelhauer & Schomaker's logarithmic
method, the one `vcdn.hashing.score` uses, so the appliance with the highest score is
chosen with probability proportional to its weight, and an appliance leaving moves only
the clients it was first for. The key is the network's address bytes as an ECS option
carries them (RFC 7871 §6: the bytes up to the last one holding a bit of the prefix, the
bits past it zero), so the compiled path hashes a slice of the query as it came. Networks
that differ only in family or in prefix length past their last byte share a key, and so
an order: harmless, as any two networks may.

XXH3 (xxHash 0.8 and later; its output is fixed by its specification) costs one C call of
a few hundred instructions on a key this short, a fifth of blake2b's copy, update, digest
and conversion; `tests/steering/test_spread.py` checks the proportions and the movement.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import log2
from typing import Final

from xxhash import xxh3_64_intdigest

from steering.prefixes import BITS

MIN_WEIGHT: Final = 0.05


def seed(node_id: str) -> int:
    """The appliance's seed: a function of its id alone."""
    return xxh3_64_intdigest(node_id.encode())


def inverse_weight(utilization: float) -> float:
    """1 / the appliance's weight, its spare capacity (at least `MIN_WEIGHT`)."""
    return 1.0 / max(MIN_WEIGHT, 1.0 - utilization)


def key(version: int, addr: int, bits: int) -> bytes:
    """The network of `bits` leading bits of `addr` as the address bytes of its ECS
    option."""
    size = (bits + 7) // 8
    net = addr >> (BITS[version] - bits) << (size * 8 - bits) if bits else 0
    return net.to_bytes(size, "big")


def score(key: bytes, seed: int, inverse_weight: float) -> float:
    """The network's score on one appliance: higher is better; see the module's formula.
    (`compiled.CompiledMap.answer_udp` spells out the same expression inline.)"""
    return (log2(xxh3_64_intdigest(key, seed) + 0.5) - 64.0) * inverse_weight


def order(key: bytes, seeds: Sequence[int], inverse_weights: Sequence[float]) -> list[int]:
    """Indexes of the appliances, best first; equal scores keep their given order."""
    scores = [score(key, s, w) for s, w in zip(seeds, inverse_weights, strict=True)]
    return sorted(range(len(scores)), key=scores.__getitem__, reverse=True)
