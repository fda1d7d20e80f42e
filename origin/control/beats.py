"""Heartbeats, written behind: answered at once, stored in batches.

A heartbeat is soft state that the next one replaces, and 1,000 appliances beating every
10 s is a steady 100 writes/s. Writing each in its own transaction costs a thread hop or a
database round trip per beat; instead beats wait here for at most `delay` seconds (or
until `max_batch` are queued) and go to the store together, in one transaction. Reads
that must see them (the appliance list, popularity, fill manifests, history) call
`flush()` first, so a client always reads its own writes. A crash loses at most the last
`delay` seconds of beats, which the appliances resend within one interval anyway.

With ``delay=0`` every beat is written before it is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Final

from origin.control.store import Beat, Store, heartbeat_json
from vcdn.errors import StoreError
from vcdn.logs import event
from vcdn.schemas import Check, Heartbeat

log = logging.getLogger("vcdn.control")
MAX_BATCH: Final = 500
MAX_KNOWN: Final = 1_000_000
HISTORY_TITLES: Final = 100  # the busiest titles of a beat the history keeps
DEFAULT_DETAIL: Final = 256
DEFAULT_ROWS: Final = 2000


def history_body(beat: Heartbeat, text: str, detail_chars: int = DEFAULT_DETAIL) -> str:
    """What the history stores of one beat: its text, unless that is unbounded.

    A dashboard needs each beat's figures and state, not 10,000 title counts nor a
    megabyte of check details: those are cut (the busiest titles, the details' start),
    so each row stays a few kilobytes whatever an appliance sends.
    """
    long_detail = any(len(c.detail) > detail_chars for c in beat.checks.values())
    if not long_detail and len(beat.title_requests) <= HISTORY_TITLES:
        return text
    counts = beat.title_requests
    if len(counts) > HISTORY_TITLES:
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:HISTORY_TITLES]
        counts = dict(top)
    checks = {
        name: c if len(c.detail) <= detail_chars else Check(c.ok, c.detail[:detail_chars])
        for name, c in beat.checks.items()
    }
    return heartbeat_json(dataclasses.replace(beat, title_requests=counts, checks=checks))


class HeartbeatBuffer:
    """Queue of beats for one store; `run()` is its background flusher."""

    def __init__(
        self,
        store: Store,
        half_life: float,
        *,
        delay: float,
        history_every: float = 0.0,
        max_batch: int = MAX_BATCH,
        history_rows: int = DEFAULT_ROWS,
    ) -> None:
        self._history_rows = history_rows
        self._store = store
        self._half_life = half_life
        self._delay = delay
        self._max_batch = max_batch
        self._pending: list[Beat] = []
        self._known: set[str] = set()
        self._history_every = history_every
        self._last_history: dict[str, tuple[float, str]] = {}  # (at, state) last kept
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.stored = 0
        self.dropped = 0

    def registered(self, appliance: str) -> None:
        """An appliance exists: its beats need no lookup."""
        if len(self._known) < MAX_KNOWN:
            self._known.add(appliance)

    def forget(self, appliance: str) -> None:
        """An appliance was deleted: its queued beats are dropped at the next flush."""
        self._known.discard(appliance)
        self._last_history.pop(appliance, None)

    async def is_known(self, appliance: str) -> bool:
        if appliance in self._known:
            return True
        # Registered through another server sharing the database, or before a restart.
        if await self._store.get_appliance(appliance) is None:
            return False
        self.registered(appliance)
        return True

    async def add(self, beat: Beat) -> None:
        """Queue a beat of a known appliance (check `is_known` first).

        Every beat updates the appliance and popularity; the history keeps one beat per
        `history_every` seconds per appliance, and every change of reported state (a
        dashboard needs minutes and transitions, not every beat: 1,000 appliances at 10 s
        would add 8.6 million rows a day).
        """
        last = self._last_history.get(beat.appliance)
        state = beat.heartbeat.state
        if last is not None and beat.at - last[0] < self._history_every and state == last[1]:
            beat = dataclasses.replace(beat, body=None)
        else:
            self._last_history[beat.appliance] = (beat.at, state)
        self._pending.append(beat)
        if self._delay <= 0 or len(self._pending) >= self._max_batch:
            await self.flush()
        elif len(self._pending) == 1:
            self._wake.set()

    async def flush(self) -> None:
        """Store everything queued so far; raises StoreError if the store fails. A batch
        another flush is still writing counts as queued: a reader flushes to see it."""
        if not self._pending and not self._lock.locked():
            return
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                stored = await self._store.record_heartbeats(
                    batch, self._half_life, keep_rows=self._history_rows
                )
                if stored < len(batch):
                    # Some appliance was deleted meanwhile: its next beat must get a 404.
                    for appliance in {b.appliance for b in batch}:
                        if await self._store.get_appliance(appliance) is None:
                            self.forget(appliance)
            except StoreError:
                self.dropped += len(batch)
                raise
            self.stored += stored

    async def run(self) -> None:
        """Flush `delay` seconds after the first beat of each batch, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._delay)
            try:
                await self.flush()
            except StoreError as exc:
                event(log, "heartbeats_dropped", logging.ERROR, detail=str(exc))

    async def close(self) -> None:
        """Final flush at shutdown; a failing store is logged, not raised."""
        with contextlib.suppress(StoreError):
            await self.flush()
