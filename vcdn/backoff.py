"""Capped exponential backoff, the one schedule every retry loop draws its delays from.

The k-th retry waits at most ``min(cap, base·2^k)``; how much of that step is drawn at
random is the caller's choice of jitter (AWS architecture blog, "Exponential Backoff And
Jitter"):

* ``equal``: uniform in [step/2, step]: a fleet restarted together spreads out, yet no
  retry comes back sooner than half the current step (the appliance's control and BGP
  loops);
* ``full``: uniform in [0, step]: the least synchronised, for the edge's short in-request
  retries of an upstream;
* ``none``: the step itself, for a schedule that must be predictable (a control replica
  that failed is skipped for exactly that long).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final, Literal

#: 2**30 · base is far past any cap; bounds the float math in long outages.
MAX_EXPONENT: Final = 30

Jitter = Literal["equal", "full", "none"]


def step(base: float, cap: float, attempt: int) -> float:
    """The longest wait of retry number `attempt` (0 for the first)."""
    return min(cap, base * (2 ** min(attempt, MAX_EXPONENT)))


def delay(base: float, cap: float, attempt: int, jitter: Jitter = "equal",
          rng: random.Random | None = None) -> float:
    """The wait before retry number `attempt`, drawn with `jitter`."""
    ceiling = step(base, cap, attempt)
    if jitter == "none":
        return ceiling
    draw = (rng or _RNG).uniform
    return draw(ceiling / 2, ceiling) if jitter == "equal" else draw(0, ceiling)


@dataclass
class Backoff:
    """A retry loop's state: each `next_delay` is one step longer, until `reset`."""

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0
    jitter: Jitter = "equal"

    def next_delay(self) -> float:
        wait = delay(self.base, self.cap, self.attempt, self.jitter, self.rng)
        self.attempt += 1
        return wait

    def reset(self) -> None:
        self.attempt = 0


_RNG: Final = random.Random()
