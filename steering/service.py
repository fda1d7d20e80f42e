"""The running state of steering: the current view, the DNS responder bound to it, the
known-titles cache, and the control-plane status that `/healthz` and metrics report.

The poll loop fetches (sync.py), builds a new immutable view (view.py) and swaps it in
with one assignment; on failure the last good view stays in service and the failure is
recorded, because answering from a slightly old view beats answering nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from steering.compiled import CompiledMap, build_tables
from steering.dns_answer import Responder, ZoneConfig
from steering.geo import Geo
from steering.select import Client, Decision, Policy, select
from steering.settings import SteeringSettings
from steering.sync import ApplianceList, ControlClient, resolve_hosts
from steering.view import (
    Capacity,
    SteeringView,
    build_view,
    host_of,
    literal_addresses,
    player_url,
    signature,
)
from vcdn.errors import ConfigError, UpstreamError
from vcdn.keyreload import read_keys
from vcdn.logs import event
from vcdn.tokens import KeyRing

log = logging.getLogger(__name__)

NEGATIVE_TITLE_SECONDS: Final = 5.0  # an unknown title may be published any moment


@dataclass(frozen=True)
class Prepared:
    signature: tuple[object, ...]
    view: SteeringView
    compiled: CompiledMap


@dataclass
class ControlStatus:
    last_ok: float | None = None
    last_error: str = ""
    errors: int = 0
    polls: int = 0


class Steering:
    def __init__(self, settings: SteeringSettings, geo: Geo | None = None,
                 clock: Callable[[], float] = time.time, *, serial: int | None = None,
                 nsid: bytes = b"") -> None:
        self.settings = settings
        self.geo = geo
        self.clock = clock
        self.keys = read_keys(settings.signing_keys, settings.signing_keys_file)
        if not self.keys:
            raise ConfigError(
                "Setting 'signing_keys' is required: set VCDN_SIGNING_KEYS, signing_keys or "
                "signing_keys_file in the settings file."
            )
        self.policy = Policy(settings.default_site, settings.dispersion, settings.saturation)
        self.capacity = Capacity(settings.appliance_max_bytes_per_s,
                                 settings.appliance_max_requests_per_s)
        self.view: SteeringView = build_view([])
        self.status = ControlStatus()
        self._resolved: dict[str, tuple[str, ...]] = {}
        self._signature: tuple[object, ...] = ()
        self.compiled: CompiledMap | None = None
        self._titles: dict[str, tuple[bool, float]] = {}
        self.responder = Responder(
            ZoneConfig.make(
                settings.zone,
                service_names=frozenset(n.lower() for n in settings.service_names),
                ns_addresses=settings.ns_addresses,
                ttl=settings.ttl,
                negative_ttl=settings.negative_ttl,
                answers=settings.answers,
                udp_payload=settings.udp_payload,
                serial=int(clock()) if serial is None else serial,
                nsid=nsid,
            ),
            self._decider(self.view),
        )

    def set_keys(self, keys: KeyRing) -> None:
        """New signing keys (a reload); the next playback answer signs with them."""
        self.keys = keys

    def _decider(self, view: SteeringView) -> Callable[[Client], Decision]:
        geo, policy, depth = self.geo, self.policy, self.settings.answers
        return lambda client: select(client, view, geo, policy, depth=depth)

    def decide(self, client: Client, title: str | None = None) -> Decision:
        return select(client, self.view, self.geo, self.policy, title)

    def prepare(self, applist: ApplianceList) -> Prepared | None:
        """Build (off the event loop: see poll_once) the view of `applist` and its compiled
        DNS mapping; None when the list is unchanged."""
        sig = signature(applist.appliances, self._resolved, self.capacity,
                        applist.heartbeat_interval)
        if sig == self._signature:
            return None
        view = build_view(
            applist.appliances, self._resolved, capacity=self.capacity,
            version=self.view.version + 1, heartbeat_interval=applist.heartbeat_interval,
            generated_at=applist.generated_at, previous=self.view,
        )
        previous = self.compiled.tables if self.compiled is not None else None
        compiled = CompiledMap(
            view, self.geo, self.policy, answers=self.settings.answers,
            ttl=self.settings.ttl, udp_payload=self.settings.udp_payload,
            tables=build_tables(view, self.geo, previous),
        )
        return Prepared(sig, view, compiled)

    def swap(self, prepared: Prepared) -> SteeringView:
        """Put a prepared view in service: plain assignments, so a query sees the old view
        or the new one, never half of each."""
        self._signature = prepared.signature
        self.view = prepared.view
        self.compiled = prepared.compiled
        self.responder.set_decide(self._decider(prepared.view), prepared.compiled)
        return prepared.view

    def install(self, applist: ApplianceList) -> SteeringView:
        """Swap in a view of `applist` (host names must already be in the resolved map);
        an unchanged list keeps the current view, and with it the DNS answer cache."""
        prepared = self.prepare(applist)
        return self.view if prepared is None else self.swap(prepared)

    @property
    def poll_interval(self) -> float:
        # Poll at least twice per heartbeat interval, so that an appliance the control plane
        # marks stale leaves the answers within two heartbeat intervals.
        return min(self.settings.poll_interval, max(0.1, self.view.heartbeat_interval / 2))

    def stale(self) -> bool:
        """True when the view is older than a few polls (control plane unreachable)."""
        last = self.status.last_ok
        return last is None or self.clock() - last > 3 * self.poll_interval + 1.0

    async def poll_once(self, control: ControlClient) -> bool:
        self.status.polls += 1
        try:
            applist = await control.fetch_appliances()
            names = {host_of(player_url(a)) for a in applist.appliances}
            names = {h for h in names if h and literal_addresses(h) is None}
            missing = names - set(self._resolved)
            if missing:  # resolved once, when an appliance first appears
                self._resolved.update(await resolve_hosts(missing))
        except UpstreamError as exc:
            self.status.errors += 1
            if exc.message != self.status.last_error:
                event(log, "control_poll_failed", level=logging.WARNING, error=exc.message)
            self.status.last_error = exc.message
            return False
        old = self.view
        # Compiling the mapping takes milliseconds to seconds (MaxMind data, prefixes): in a
        # thread, so the loop keeps answering (the GIL is handed over every few ms).
        prepared = await asyncio.to_thread(self.prepare, applist)
        view = old if prepared is None else self.swap(prepared)
        self.status.last_ok = self.clock()
        self.status.last_error = ""
        if view is not old and (set(old.nodes) != set(view.nodes) or old.version == 0):
            event(log, "view_changed", version=view.version, usable=sorted(view.nodes),
                  dropped=list(view.dropped))
        return True

    async def poll_loop(self, control: ControlClient) -> None:
        while True:
            await self.poll_once(control)
            await asyncio.sleep(self.poll_interval)

    async def title_known(self, control: ControlClient, title: str) -> bool:
        """Whether the control plane knows `title`, cached (positive answers longer)."""
        now = self.clock()
        cached = self._titles.get(title)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            known = await control.title_exists(title)
        except UpstreamError:
            if cached is not None:
                return cached[0]  # a stale answer beats none while the control plane is down
            raise
        ttl = self.settings.title_cache_seconds if known else NEGATIVE_TITLE_SECONDS
        if len(self._titles) > 100_000:
            self._titles.clear()
        self._titles[title] = (known, now + ttl)
        return known
