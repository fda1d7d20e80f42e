"""The appliance: the edge engine plus the control loops, under one lifecycle.

    start:  reconcile the cache with the disk (a crash may have left anything), start the
            edge (public port; HTTPS on `tls_port` once the certificate is there, ACME
            answered on the public port) and the admin API (localhost), say where they listen
    run:    under one asyncio.TaskGroup, the control loop (register, heartbeat) and the
            fill loop (manifest, window, fill); serving never waits on either
    stop:   SIGTERM/SIGINT → state `draining` (told to the control plane at once), stop
            accepting, let requests in flight finish within `drain_timeout`, then stop

The `Appliance` object is also what the admin API drives (`admin.Controls`). It wires
the parts together; what a heartbeat says is `appliance.heartbeat`, the fill loop
`appliance.fill_loop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

from appliance.acme import Renewer
from appliance.admin import make_admin_app
from appliance.bgp_speaker import BgpSpeaker
from appliance.control_loop import ControlLoop
from appliance.fill import Filler
from appliance.fill_loop import FillLoop
from appliance.heartbeat import Beats, disk_free
from appliance.metrics import ApplianceMetrics
from appliance.settings import ApplianceSettings, derived_tls_url
from appliance.state import Status
from edge.app import Edge, make_app
from edge.settings import EdgeSettings
from edge.workers import add_https, start_listeners
from vcdn import acme_http
from vcdn.acme_http import Challenges
from vcdn.control_client import ControlClient
from vcdn.errors import ConfigError
from vcdn.httpserve.server import start
from vcdn.keyreload import KeyWatch
from vcdn.logs import event
from vcdn.schemas import Heartbeat
from vcdn.tls_io import CertStore, CertWatch, client_connector, listener
from vcdn.tokens import KeyRing

log = logging.getLogger("vcdn.appliance")
FAREWELL_TIMEOUT: Final = 3.0  # the last "draining" beat may delay the stop this long


def edge_settings(s: ApplianceSettings) -> EdgeSettings:
    """The edge engine's settings, derived from the appliance's (one process, one worker);
    its tuning is the operator's `[edge]` table as it is."""
    return EdgeSettings(
        **vars(s.edge),
        cache_dir=s.cache_dir,
        upstream=s.origin_url,
        capacity=s.cache_capacity,
        peers=s.peers,
        auth=s.auth,
        signing_keys=s.signing_keys,
        key_service=s.key_service or s.control_url.split(",")[0].strip(),
        host=s.host,
        port=s.port,
        # The video listener's HTTPS port: the appliance's chains (and ACME's output).
        **({"tls_cert": s.tls_cert, "tls_key": s.tls_key, "tls_certs": s.tls_certs,
            "tls_port": s.tls_port} if s.tls_port is not None else {}),
        workers=1,
        read_timeout=s.upstream_timeout,
        # The engine's own fills (origin, peers) verify as the appliance's clients do.
        ca_bundle=s.ca_bundle,
        tls_client_cert=s.tls_client_cert,
        tls_client_key=s.tls_client_key,
        log_level=s.log_level,
        **vars(s.http_limits()),
    )


class Appliance:
    """One appliance process (see module doc)."""

    def __init__(self, settings: ApplianceSettings, *, edge: Edge | None = None) -> None:
        self.settings = settings
        self.status = Status(appliance=settings.id, site=settings.site)
        self.status.fill.window = str(settings.window)
        self.edge = edge or Edge(edge_settings(settings))
        self.metrics = ApplianceMetrics(self.edge.registry)
        self.urls: dict[str, str] = {}
        self._stop = asyncio.Event()
        self._fill_now = asyncio.Event()
        self._runners: list[web.AppRunner] = []
        self.beats = Beats(settings, self.edge, self.status, self.metrics, self._connections)
        self.control: ControlLoop | None = None
        self.filler: Filler | None = None
        self.learned: tuple[str, ...] = ()
        peer = settings.bgp
        self.bgp = BgpSpeaker(peer, settings.cache_dir / "bgp", self._prefixes_learned) \
            if peer is not None else None
        # TLS: the admin listener's certificates (admin_tls) and their ACME renewal.
        self.challenges = Challenges()
        self.certs: CertStore | None = None
        self.cert_watch: CertWatch | None = None
        self.renewer = Renewer(settings, self.challenges, self._certificate_issued,
                               self.edge.registry) if settings.acme_directory else None

    def _prefixes_learned(self, prefixes: tuple[str, ...]) -> None:
        self.learned = prefixes
        if self.control is not None:
            self.control.reregister()

    # --- admin.Controls ----------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        s = self.edge.store.stats()
        disk = disk_free(self.settings.cache_dir)
        stats = self.edge.stats
        out = self.status.snapshot()
        out["cache"] = {
            "objects": s.objects, "bytes_used": s.bytes_used, "capacity": s.capacity,
            "free_bytes": s.free_bytes, "disk_free": disk,
        }
        out["served"] = {
            "hit_ratio": stats.hit_ratio, "bytes": stats.sent, "hits": stats.hits,
            "misses": stats.misses, "connections": self._connections(),
        }
        out["checks"] = {k: {"ok": v.ok, "detail": v.detail} for k, v in self.beats.checks.items()}
        out["urls"] = dict(self.urls)
        if self.bgp is not None:
            out["bgp"] = {
                "neighbor": self.bgp.peer.neighbor, "state": self.bgp.state,
                "prefixes": list(self.learned), "restarts": self.bgp.restarts,
            }
        return out

    def drain(self) -> None:
        if self.status.state == "serving":
            self.status.state = "draining"
        self.edge.draining = True
        self.metrics.draining.set(1)
        event(log, "draining")
        if self.control is not None:
            self.control.beat_now()

    def undrain(self) -> None:
        if self.status.state == "draining":
            self.status.state = "serving"
        self.edge.draining = False
        self.metrics.draining.set(0)
        event(log, "undrained")
        if self.control is not None:
            self.control.beat_now()

    def fill_now(self) -> None:
        event(log, "fill_now_requested")
        self._fill_now.set()

    async def purge(self, title: str) -> int:
        removed = await self.edge.run(self.edge.store.purge, title=title)
        event(log, "purged", title=title, objects=removed)
        return int(removed)

    def stop(self) -> None:
        self._stop.set()

    # --- heartbeat contents ------------------------------------------------------------

    def _connections(self) -> int:
        runner = self._runners[0] if self._runners else None
        return len(runner.server.connections) if runner and runner.server else 0

    async def collect(self, session: aiohttp.ClientSession) -> Heartbeat:
        return await self.beats.collect(session)

    # --- lifecycle ---------------------------------------------------------------------

    async def _start_servers(self, edge_app: web.Application, admin_app: web.Application) -> None:
        """Plain HTTP first (ACME's HTTP-01 is answered there), then the certificates
        (obtained when due), then HTTPS on `tls_port` through the same hit protocol and
        the admin API; one certificate store for both TLS listeners, so one reload (ACME,
        SIGHUP, a changed file) swaps them together."""
        s = self.settings
        public = await start_listeners(edge_app, self.edge.settings,
                                       shutdown_timeout=s.drain_timeout, https=False)
        self._runners.append(public.runner)
        self.urls["public"] = public.urls[0]
        certs = await self._certificates()
        if s.tls_port is not None:
            assert certs is not None
            url = await add_https(public, edge_app, self.edge.settings, certs,
                                  shutdown_timeout=s.drain_timeout)
            self.urls["public_tls"] = url
            if not s.tls_url:  # tls_port 0: the URL is known once bound
                port = int(url.rsplit(":", 1)[1])
                self.settings = s = dataclasses.replace(
                    s, tls_url=derived_tls_url(s.public_url, port))
                if self.control is not None:
                    self.control.settings = s
        try:
            runner, url = await start(admin_app, s.admin_host, s.admin_port, s.http_limits(),
                                      ssl_context=certs.context if s.admin_tls and certs
                                      else None)
        except OSError as exc:
            raise ConfigError(
                f"Cannot listen on {s.admin_host}:{s.admin_port} (setting 'admin_port'): "
                f"{exc.strerror}."
            ) from None
        self._runners.append(runner)
        self.urls["admin"] = url

    def _certificate_issued(self) -> None:
        if self.cert_watch is not None:
            self.cert_watch.reload("acme")

    async def _certificates(self) -> CertStore | None:
        """The TLS listeners' certificates (video `tls_port`, `admin_tls`): the configured
        chains, obtained from ACME first when there is none yet or renewal is due (the
        public port answers HTTP-01 by then). None when no listener speaks TLS."""
        s = self.settings
        if self.renewer is not None and self.renewer.due_in() == 0:
            await self.renewer.renew()
        if not s.admin_tls and s.tls_port is None:
            return None
        self.certs = listener(s.cert_pairs())
        assert self.certs is not None
        self.cert_watch = CertWatch(self.certs)
        return self.certs

    def set_keys(self, keys: KeyRing) -> None:
        """New signing keys: the edge verifies with them, the fill signs peer requests."""
        self.edge.set_keys(keys)
        if self.filler is not None:
            self.filler.set_keys(keys)

    async def serve(self, ready: Callable[[dict[str, str]], None] | None = None) -> None:
        s = self.settings
        report = await asyncio.to_thread(self.edge.store.reconcile)
        event(log, "cache_reconciled", **{k: getattr(report, k) for k in report.__slots__})
        edge_app = make_app(self.edge.settings, edge=self.edge)
        admin_app = make_admin_app(self, s.operator_token, self.edge.registry)
        edge_app.middlewares.append(acme_http.middleware(self.challenges))  # HTTP-01
        # The default timeout bounds control-plane calls (the client uses this session's);
        # fill downloads set their own, since a large file may take minutes under the cap.
        session = aiohttp.ClientSession(
            # Control, origin, peers: verified; the client certificate when configured
            # (mutual TLS with the control plane).
            connector=client_connector(s.ca_bundle, s.tls_client_cert, s.tls_client_key),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=s.upstream_timeout),
        )
        try:
            api = ControlClient(s.control_url, s.control_token, timeout=s.upstream_timeout,
                                session=session)
            self.filler = Filler(s, self.edge.store, session, self.status, self.metrics,
                                 run=self.edge.run)
            fills = FillLoop(s, self.filler, self.status, self._fill_now)

            async def collect() -> Heartbeat:
                return await self.collect(session)

            self.control = ControlLoop(s, api, self.status, self.metrics, collect,
                                       on_consumed=self.beats.consumed,
                                       learned=lambda: self.learned)
            await self._start_servers(edge_app, admin_app)
            self.status.state = "draining" if self.edge.draining else "serving"
            s = self.settings  # tls_url may be known only now
            event(log, "listening", appliance=s.id, site=s.site, public=self.urls["public"],
                  public_tls=self.urls.get("public_tls"), tls_url=s.tls_url,
                  admin=self.urls["admin"])
            if ready is not None:
                ready(dict(self.urls))
            async with asyncio.TaskGroup() as tg:
                loops = [tg.create_task(self.control.run()),
                         tg.create_task(fills.run(api, self.control.registered))]
                if self.bgp is not None:
                    loops.append(tg.create_task(self.bgp.run()))
                if self.cert_watch is not None:
                    loops.append(tg.create_task(self.cert_watch.run()))
                if self.renewer is not None:
                    loops.append(tg.create_task(self.renewer.run()))
                await self._stop.wait()
                self.status.state = "stopping"
                self.edge.draining = True
                for task in loops:
                    task.cancel()
            await self._farewell()
        finally:
            await self._shutdown(session)

    async def _farewell(self) -> None:
        """One last beat saying `draining`, so steering stops sending clients right away."""
        if self.control is None or not self.status.registered:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(FAREWELL_TIMEOUT):
                await self.control.beat_once()

    async def _shutdown(self, session: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        # The edge first: stop accepting, finish requests in flight (drain_timeout), stop.
        for runner in self._runners:
            await runner.cleanup()
        await session.close()
        event(log, "stopped", seconds=round(time.monotonic() - started, 3))


def run(
    settings: ApplianceSettings,
    ready: Callable[[dict[str, str]], None],
    reload: Callable[[], ApplianceSettings] | None = None,
    config: Path | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (the CLI's entry into the event loop). SIGHUP, or a change
    of the settings or keys file, puts new signing keys into service (`reload` rebuilds
    the settings as start-up did)."""

    async def main() -> None:
        appliance = Appliance(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, appliance.stop)
        keys_file = settings.signing_keys_file
        if keys_file is not None and not keys_file.is_absolute() and config is not None:
            keys_file = config.parent / keys_file  # as `appliance.settings.load` reads it
        files = [p for p in (config, keys_file) if p is not None]
        watch = KeyWatch(
            lambda: (reload() if reload is not None else settings).keys,
            appliance.set_keys, files, current=appliance.edge.keys,
        )
        watcher = asyncio.create_task(watch.run())
        try:
            await appliance.serve(ready)
        finally:
            watcher.cancel()

    asyncio.run(main())
