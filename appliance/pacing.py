"""Pacing for the fill loop: a token bucket for fill bandwidth.

It takes its clock and sleep as arguments so that tests run in virtual time. (Retries
draw their delays from `vcdn.backoff`.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """Bytes per second with a burst; `rate <= 0` means unlimited.

    `take(n)` waits until n bytes may be sent. A request larger than the burst is allowed
    to drive the bucket negative (then the next caller waits), so large chunks never stall.
    """

    rate: float
    burst: float = 0.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _tokens: float = field(default=0.0, init=False)
    _stamp: float = field(default=-1.0, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def __post_init__(self) -> None:
        if self.burst <= 0:
            self.burst = max(self.rate, 64 * 1024)
        self._tokens = self.burst

    async def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            now = self.clock()
            if self._stamp >= 0:
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 0 or (self._tokens < n and self._tokens < self.burst):
                wait = (min(n, self.burst) - self._tokens) / self.rate
                await self.sleep(wait)
                # Credit the time actually slept (a loaded loop oversleeps), capped at the burst.
                now = self.clock()
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
            self._tokens -= n
