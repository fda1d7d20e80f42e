"""The popularity-aware policy, the appliance default: manifest first, S3-FIFO for the rest.

What an appliance should hold is decided the night before by the fill planner from
predicted popularity (`origin.control.planning`); the appliance fills it off-peak and pins
it. Eviction then only has to protect that decision and be careful with what arrives on
demand: pinned objects are offered last (least recently used among them first), and
on-demand objects go through S3-FIFO's probation, so a burst of one-off misses (the long
tail, a crawler) cycles through the small queue instead of flushing the popular titles.
A title dropped from tonight's manifest is unpinned into S3-FIFO's main queue with no
credit: it stays while there is room and goes first when there is not.
"""

from __future__ import annotations

from typing import Final

from edge.policies.s3fifo import S3FIFO, SMALL_RATIO


class PopularityAware(S3FIFO):
    """Pinned (manifest) objects last; on-demand objects through S3-FIFO admission."""

    name: Final = "popularity"  # type: ignore[misc]
    __slots__ = ()

    def __init__(self, small_ratio: float = SMALL_RATIO) -> None:
        super().__init__(small_ratio)
