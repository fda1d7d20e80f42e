"""Register and heartbeat: keep the control plane told who we are and how we are.

One loop, so that ordering is obvious: register (idempotent) until it works, then beat
every interval. The control plane answering 404 for our id (it lost its database, or an
operator removed us) or coming back after an outage makes us register again before the
next beat, because a beat it cannot attach to an appliance is worthless. Failures back off
exponentially with jitter, capped, so a fleet does not stampede a control plane that is
coming back up; serving never waits on any of this.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from appliance.metrics import ApplianceMetrics
from appliance.settings import ApplianceSettings
from appliance.state import Status
from vcdn.backoff import Backoff
from vcdn.errors import ClientError, NotFound, UpstreamError
from vcdn.logs import event
from vcdn.prefixes import keep_approved
from vcdn.schemas import EnrollmentView, Heartbeat, Registration

log = logging.getLogger("vcdn.appliance.control")
BACKOFF_CAP_BEATS = 6.0  # the longest retry gap, in heartbeat intervals


class Control(Protocol):
    """The calls of `vcdn.control_client.ControlClient` this loop makes."""

    async def register_appliance(self, registration: Registration) -> Any: ...

    async def heartbeat(self, appliance: str, heartbeat: Heartbeat) -> Any: ...

    async def enrollment(self, appliance: str) -> EnrollmentView: ...


def registration(s: ApplianceSettings, learned: Sequence[str] = ()) -> Registration:
    """Who we are; client prefixes are the configured ones plus those learned over BGP."""
    prefixes = list(dict.fromkeys([*s.prefixes, *learned]))
    return Registration(
        id=s.id,
        site=s.site,
        public_url=s.public_url,
        capacity_bytes=s.cache_capacity,
        asn=s.asn,
        lat=s.lat,
        lon=s.lon,
        prefixes=prefixes,
        tls_url=s.tls_url,
    )


class ControlLoop:
    """Registers, then beats; see module doc. `collect` builds each heartbeat;
    `on_consumed` is told when the control plane took (or refused for good) its counts."""

    def __init__(
        self,
        settings: ApplianceSettings,
        api: Control,
        status: Status,
        metrics: ApplianceMetrics,
        collect: Callable[[], Awaitable[Heartbeat]],
        *,
        on_consumed: Callable[[], None] | None = None,
        learned: Callable[[], Sequence[str]] = tuple,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.api = api
        self.status = status
        self.metrics = metrics
        self.collect = collect
        self.on_consumed = on_consumed
        self.learned = learned
        self.sleep = sleep
        self.clock = clock
        interval = settings.heartbeat_interval
        self.backoff = Backoff(base=min(1.0, interval), cap=max(interval * BACKOFF_CAP_BEATS, 1.0))
        self._wake = asyncio.Event()
        self.registered = asyncio.Event()  # set once the first registration went through
        self._generation = 0  # bumped when what we register changes

    def reregister(self) -> None:
        """Register again at once (our client prefixes changed)."""
        self._generation += 1
        self.status.registered = False
        self._wake.set()

    def beat_now(self) -> None:
        """Send the next heartbeat at once (after drain/undrain, so steering learns fast)."""
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _failed(self, what: str, exc: Exception) -> None:
        delay = self.backoff.next_delay()
        self.status.control_ok = False
        self.status.heartbeat_error = f"{what}: {exc}"
        event(log, f"{what}_failed", logging.WARNING, error=str(exc), retry_in=round(delay, 3))
        await self.sleep(delay)

    async def approved_learned(self) -> list[str]:
        """BGP-learned prefixes inside what the operator approved for us.

        The ISP's router may announce anything (a default route, another ISP's space);
        the control plane would refuse the whole registration for one such prefix, so
        the ones outside our enrolment are dropped here, and logged.
        """
        learned = list(self.learned())
        if not learned:
            return []
        approved = (await self.api.enrollment(self.settings.id)).prefixes
        kept, dropped = keep_approved(learned, approved)
        if dropped:
            event(log, "bgp_prefixes_refused", logging.WARNING, prefixes=dropped,
                  approved=approved)
        return kept

    async def register_once(self) -> bool:
        generation = self._generation
        try:
            learned = await self.approved_learned()
            await self.api.register_appliance(registration(self.settings, learned))
        except (UpstreamError, ClientError) as exc:
            self.metrics.registrations.labels("error").inc()
            await self._failed("register", exc)
            return False
        self.metrics.registrations.labels("ok").inc()
        # A change that arrived while this registration was in flight needs another one.
        self.status.registered = generation == self._generation
        self.registered.set()
        self.status.control_ok = True
        self.status.heartbeat_error = ""
        self.backoff.reset()
        event(log, "registered", site=self.settings.site, public_url=self.settings.public_url)
        return True

    async def beat_once(self) -> bool:
        beat = await self.collect()
        try:
            await self.api.heartbeat(self.settings.id, beat)
        except NotFound as exc:
            # The control plane does not know us (any more): register again, right away.
            self.metrics.heartbeats.labels("unknown").inc()
            self.status.registered = False
            event(log, "heartbeat_unknown_appliance", logging.WARNING, error=str(exc))
            return False
        except UpstreamError as exc:
            self.metrics.heartbeats.labels("error").inc()
            # After an outage the control plane may have lost state: register on return.
            self.status.registered = False
            await self._failed("heartbeat", exc)
            return False
        except ClientError as exc:
            # Refused for good (400, 403): do not resend the same per-title counts forever.
            self.metrics.heartbeats.labels("rejected").inc()
            if self.on_consumed is not None:
                self.on_consumed()
            await self._failed("heartbeat", exc)
            return False
        self.metrics.heartbeats.labels("ok").inc()
        if self.on_consumed is not None:
            self.on_consumed()
        self.status.last_heartbeat = self.clock()
        self.status.control_ok = True
        self.status.heartbeat_error = ""
        self.backoff.reset()
        return True

    async def run(self) -> None:
        while True:
            try:
                if not self.status.registered and not await self.register_once():
                    continue
                if await self.beat_once():
                    await self._pause(self.settings.heartbeat_interval)
            except Exception as exc:  # a bug or a broken store must not stop the beats
                log.exception("control_loop_error")
                await self._failed("heartbeat", exc)
