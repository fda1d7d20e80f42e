"""The appliance: the edge engine plus the control loops, under one lifecycle.

    start:  reconcile the cache with the disk (a crash may have left anything), start the
            edge (public port) and the admin API (localhost), say where they listen
    run:    under one asyncio.TaskGroup, the control loop (register, heartbeat) and the
            fill loop (manifest, window, fill); serving never waits on either
    stop:   SIGTERM/SIGINT → state `draining` (told to the control plane at once), stop
            accepting, let requests in flight finish within `drain_timeout`, then stop

The `Appliance` object is also what the admin API drives (`admin.Controls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import ssl
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

from appliance import checks
from appliance.acme import Renewer
from appliance.admin import make_admin_app
from appliance.bgp_speaker import BgpSpeaker
from appliance.control_loop import ControlLoop
from appliance.fill import Filler
from appliance.metrics import ApplianceMetrics
from appliance.settings import ApplianceSettings
from appliance.state import Status
from edge.app import Edge, make_app
from edge.settings import EdgeSettings
from edge.workers import start_edge
from vcdn import acme_http
from vcdn.acme_http import Challenges
from vcdn.control_client import ControlClient
from vcdn.errors import ClientError, ConfigError, StoreError, UpstreamError
from vcdn.httpserve.server import start
from vcdn.keyreload import KeyWatch
from vcdn.logs import event
from vcdn.schemas import Check, FillManifest, Heartbeat, Load, decode, encode
from vcdn.tls_io import CertStore, CertWatch, client_connector, listener
from vcdn.tokens import KeyRing

log = logging.getLogger("vcdn.appliance")
MANIFEST_FILE: Final = "fill-manifest.json"  # the last manifest, so a restart can resume
REGISTRATION_GRACE: Final = 10.0
FAREWELL_TIMEOUT: Final = 3.0  # the last "draining" beat may delay the stop this long


def edge_settings(s: ApplianceSettings) -> EdgeSettings:
    """The edge engine's settings, derived from the appliance's (one process, one worker)."""
    return EdgeSettings(
        cache_dir=s.cache_dir,
        upstream=s.origin_url,
        capacity=s.cache_capacity,
        peers=s.peers,
        auth=s.auth,
        signing_keys=s.signing_keys,
        key_service=s.key_service or s.control_url.split(",")[0].strip(),
        host=s.host,
        port=s.port,
        workers=1,
        read_timeout=s.upstream_timeout,
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
        self._checks: dict[str, Check] = {}
        self._pending_titles: Counter[str] = Counter()
        self._last_load = (time.monotonic(), 0, 0)
        self._runners: list[web.AppRunner] = []
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
        disk_free = _disk_free(self.settings.cache_dir)
        stats = self.edge.stats
        out = self.status.snapshot()
        out["cache"] = {
            "objects": s.objects, "bytes_used": s.bytes_used, "capacity": s.capacity,
            "free_bytes": s.free_bytes, "disk_free": disk_free,
        }
        out["served"] = {
            "hit_ratio": stats.hit_ratio, "bytes": stats.sent, "hits": stats.hits,
            "misses": stats.misses, "connections": self._connections(),
        }
        out["checks"] = {k: {"ok": v.ok, "detail": v.detail} for k, v in self._checks.items()}
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
        s = self.settings
        store = await self.edge.run(self.edge.store.stats)
        writable, room = await asyncio.gather(
            asyncio.to_thread(checks.disk_writable, s.cache_dir),
            asyncio.to_thread(checks.free_space, s.cache_dir, s.cache_free_floor),
        )
        upstream = await checks.upstream(session, s.origin_url, self.status.upstream)
        self._checks = {"disk_writable": writable, "free_space": room, "upstream": upstream}
        self.metrics.upstream_up.labels("any").set(1 if upstream.ok else 0)
        stats = self.edge.stats
        now = time.monotonic()
        then, requests_then, sent_then = self._last_load
        requests = stats.hits + stats.misses
        elapsed = max(now - then, 1e-3)
        self._last_load = (now, requests, stats.sent)
        self._pending_titles.update(stats.take_title_requests())
        return Heartbeat(
            state=self.status.health,
            load=Load(
                requests_per_s=round((requests - requests_then) / elapsed, 3),
                bytes_per_s=round((stats.sent - sent_then) / elapsed, 1),
                connections=self._connections(),
            ),
            # What the cache may still take: its budget, unless the disk has less.
            free_bytes=min(store.free_bytes, _disk_free(s.cache_dir)),
            used_bytes=store.bytes_used,
            objects=store.objects,
            bytes_served=stats.sent,
            hit_ratio=round(min(1.0, max(0.0, stats.hit_ratio)), 4),
            title_requests=dict(self._pending_titles),
            checks=dict(self._checks),
        )

    def _beat_sent(self) -> None:
        self._pending_titles.clear()

    # --- fill loop ---------------------------------------------------------------------

    def _manifest_path(self) -> Path:
        return self.settings.cache_dir / MANIFEST_FILE

    def _load_manifest(self) -> FillManifest | None:
        try:
            return decode(FillManifest, json.loads(self._manifest_path().read_text()))
        except (OSError, ValueError, ClientError):
            return None

    def _save_manifest(self, manifest: FillManifest) -> None:
        path = self._manifest_path()
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(encode(manifest)))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: we still have it in memory

    async def _wait(self, event_: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event_.wait()

    async def fill_loop(self, api: ControlClient) -> None:
        assert self.filler is not None
        s = self.settings
        window = s.window
        manifest = await asyncio.to_thread(self._load_manifest)
        # The control plane answers 404 for an appliance it does not know yet: give the
        # first registration a moment rather than wait a whole fill interval after a 404.
        if self.control is not None:
            await self._wait(self.control.registered, min(s.fill_interval, REGISTRATION_GRACE))
        while True:
            fetched = False
            forced = self._fill_now.is_set()
            self._fill_now.clear()
            now = datetime.now()
            self.status.fill.window_open = window.is_open(now)
            try:
                manifest = await api.fill_manifest(s.id)
                fetched = True
                self.status.fill.manifest_at = time.time()
                await asyncio.to_thread(self._save_manifest, manifest)
            except (UpstreamError, ClientError) as exc:
                self.status.fill.last_error = f"fill manifest: {exc}"
                event(log, "fill_manifest_failed", logging.WARNING, error=str(exc),
                      have_previous=manifest is not None)
            if manifest is not None:
                try:
                    await self.filler.run(manifest, download=forced or self.status.fill.window_open)
                except StoreError as exc:
                    self.status.fill.last_error = str(exc)
                    event(log, "fill_failed", logging.ERROR, error=str(exc))
                except Exception as exc:  # never let one bad pass stop the fill (or serving)
                    self.status.fill.last_error = f"fill pass failed: {exc!r}"
                    log.exception("fill_pass_error")
            delay = s.fill_interval
            if not fetched:  # retry sooner, like the heartbeat does
                delay = min(delay, max(1.0, 2 * s.heartbeat_interval))
            if not self.status.fill.window_open:
                delay = min(delay, max(1.0, window.seconds_until_open(datetime.now())))
            await self._wait(self._fill_now, delay)

    # --- lifecycle ---------------------------------------------------------------------

    async def _start_servers(self, edge_app: web.Application, admin_app: web.Application) -> None:
        s = self.settings
        for name, app, host, port in (
            ("public", edge_app, s.host, s.port),
            ("admin", admin_app, s.admin_host, s.admin_port),
        ):
            try:
                if name == "public":  # the edge's own listener: hits take its fast path
                    runner, url = await start_edge(
                        app, self.edge.settings, shutdown_timeout=s.drain_timeout
                    )
                else:
                    runner, url = await start(app, host, port, s.http_limits(),
                                              ssl_context=await self._admin_tls())
            except OSError as exc:
                key = "port" if name == "public" else "admin_port"
                raise ConfigError(
                    f"Cannot listen on {host}:{port} (setting '{key}'): {exc.strerror}."
                ) from None
            self._runners.append(runner)
            self.urls[name] = url

    def _certificate_issued(self) -> None:
        if self.cert_watch is not None:
            self.cert_watch.reload("acme")

    async def _admin_tls(self) -> ssl.SSLContext | None:
        """The admin listener's TLS context: the configured chains, obtained from ACME
        first when there is none yet (the public port answers HTTP-01 by then)."""
        s = self.settings
        if self.renewer is not None and self.renewer.due_in() == 0:
            await self.renewer.renew()
        if not s.admin_tls:
            return None
        self.certs = listener(s.cert_pairs())
        assert self.certs is not None
        self.cert_watch = CertWatch(self.certs)
        return self.certs.context

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

            async def collect() -> Heartbeat:
                return await self.collect(session)

            self.control = ControlLoop(s, api, self.status, self.metrics, collect,
                                       on_consumed=self._beat_sent, learned=lambda: self.learned)
            await self._start_servers(edge_app, admin_app)
            self.status.state = "draining" if self.edge.draining else "serving"
            event(log, "listening", appliance=s.id, site=s.site, public=self.urls["public"],
                  admin=self.urls["admin"])
            if ready is not None:
                ready(dict(self.urls))
            async with asyncio.TaskGroup() as tg:
                loops = [tg.create_task(self.control.run()), tg.create_task(self.fill_loop(api))]
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


def _disk_free(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


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
