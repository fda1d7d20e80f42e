"""`vcdn steering`: DNS (UDP+TCP) and the HTTP playback API, fed by the control API.

Lifecycle: load settings → open the MaxMind databases → bind DNS and HTTP (printing where)
→ poll the control plane until SIGTERM/SIGINT → close listeners, cancel the poller.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp

from steering import dns_server
from steering.geo import Geo
from steering.http_api import make_app
from steering.service import Steering
from steering.settings import SteeringSettings
from steering.sync import ControlClient
from steering.workers import Supervisor, default_workers, reserve
from vcdn.control_client import URLS_ENV
from vcdn.errors import ConfigError
from vcdn.httpserve.server import start_service
from vcdn.keyreload import KeyWatch, read_keys
from vcdn.logs import event, setup_logging
from vcdn.settings import load_settings
from vcdn.tls import add_tls_args, tls_overrides
from vcdn.tls_io import CertWatch, client_connector
from vcdn.tokens import KeyRing

log = logging.getLogger("steering")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="vcdn steering",
        description="Authoritative DNS (with EDNS Client Subnet) and an HTTP playback API "
        "that send each client to the best healthy appliance. Secrets come from the "
        "environment: VCDN_CONTROL_TOKEN and VCDN_SIGNING_KEYS ('kid:secret,...').",
    )
    p.add_argument("--config", type=Path, help="TOML settings file")
    p.add_argument("--control", action="append", metavar="URL",
                   help="control API base URL, e.g. http://127.0.0.1:8100; repeat (or list "
                   "comma-separated) for control replicas (default: $VCDN_CONTROL_URLS)")
    p.add_argument("--zone", help="the zone we are authoritative for, e.g. cdn.example.")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--dns-port", type=int, help="DNS port, UDP and TCP (default 5300; 0 = any)")
    p.add_argument("--http-port", type=int, help="HTTP port (default 8300; 0 = any)")
    p.add_argument("--geoip-city", help="MaxMind City database (.mmdb)")
    p.add_argument("--geoip-asn", help="MaxMind ASN database (.mmdb)")
    p.add_argument("--origin-url", help="origin base URL, the playback API's last resort")
    p.add_argument("--default-site", help="site for clients nothing else places")
    p.add_argument("--ttl", type=int, help="TTL of steered answers in seconds (default 20)")
    p.add_argument("--answers", type=int, help="addresses per A/AAAA answer (default 2)")
    p.add_argument("--poll-interval", type=float, help="control API poll period (default 2)")
    p.add_argument("--workers", type=int, help="worker processes sharing the DNS and HTTP "
                   "ports with SO_REUSEPORT (default: the CPUs this process may use)")
    add_tls_args(p)
    # Set by the supervisor for its workers: "SOA serial:NSID".
    p.add_argument("--worker", help=argparse.SUPPRESS)
    # Set by the supervisor for its first worker: the reserved UDP socket, handed over.
    p.add_argument("--udp-fd", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


async def serve(settings: SteeringSettings, geo: Geo, worker: str | None = None,
                reload: Callable[[], SteeringSettings] | None = None,
                config: Path | None = None, udp_fd: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT; SIGHUP, or a change of the settings or keys file,
    puts new signing keys into service (`reload` rebuilds the settings as start-up did)."""
    serial, nsid = (worker.split(":", 1) if worker else ("", ""))
    steering = Steering(settings, geo, serial=int(serial) if serial else None,
                        nsid=nsid.encode())
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The control plane's certificate is checked (system store or `ca_bundle`).
    async with aiohttp.ClientSession(connector=client_connector(settings.ca_bundle)) as session:
        control = ControlClient(session, settings.control, settings.control_token)
        # Listen with a view, or once the control plane has failed to give one: an empty
        # view answers NODATA, and a worker joins ports that others already serve.
        await steering.poll_once(control)
        try:
            udp, tcp, dns_port = await dns_server.start(
                steering.responder, settings.host, settings.dns_port,
                reuse_port=worker is not None, limits=dns_server.TcpLimits.of(settings),
                udp_sock=None if udp_fd is None else socket.socket(fileno=udp_fd))
        except OSError as exc:
            raise ConfigError(
                f"Cannot listen on {settings.host} (DNS port {settings.dns_port}): "
                f"{exc.strerror or exc}."
            ) from None
        try:
            runner, urls, certs = await start_service(
                make_app(steering, control), settings.host, settings.http_port,
                settings.http_limits(), settings, reuse_port=worker is not None)
        except ConfigError:
            udp.close()
            tcp.close()
            raise
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        http_port = int(urls[0].rpartition(":")[2])
        print(f"vcdn steering: DNS on {host}:{dns_port} (UDP and TCP) for zone "
              f"{settings.zone}; HTTP on {' and '.join(urls)}", flush=True)
        event(log, "listening", dns_port=dns_port, http_port=http_port, zone=settings.zone)
        poller = asyncio.create_task(steering.poll_loop(control))
        files = [p for p in (config, settings.signing_keys_file) if p is not None]
        watch = KeyWatch(
            lambda: _keys_of(reload() if reload is not None else settings),
            steering.set_keys, files, current=steering.keys,
        )
        watcher = asyncio.create_task(watch.run())
        cert_watcher = asyncio.create_task(CertWatch(certs).run()) if certs else None
        try:
            await stop.wait()
        finally:
            event(log, "stopping")
            watcher.cancel()
            if cert_watcher is not None:
                cert_watcher.cancel()
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            udp.close()
            tcp.close()
            await tcp.wait_closed()
            await runner.cleanup()


def _keys_of(settings: SteeringSettings) -> KeyRing:
    return read_keys(settings.signing_keys, settings.signing_keys_file)


def control_override(flags: list[str] | None) -> str | None:
    """Repeated `--control` flags, else ``VCDN_CONTROL_URLS``, as the comma-separated
    `control` setting (None: the settings file decides)."""
    if flags:
        return ",".join(flags)
    return os.environ.get(URLS_ENV, "").strip() or None


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    overrides = {
        "control": control_override(args.control), "zone": args.zone, "host": args.host,
        "dns_port": args.dns_port, "http_port": args.http_port,
        "geoip_city": args.geoip_city, "geoip_asn": args.geoip_asn,
        "origin_url": args.origin_url, "default_site": args.default_site,
        "ttl": args.ttl, "answers": args.answers, "poll_interval": args.poll_interval,
        **tls_overrides(args),
    }
    settings = load_settings(SteeringSettings, args.config, overrides=overrides)

    def reload() -> SteeringSettings:
        return load_settings(SteeringSettings, args.config, overrides=overrides)

    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}.")
    if workers > 1 and settings.tls_port == 0:
        raise ConfigError("--tls-port 0 picks a port per process; with --workers above 1 "
                          "give a fixed port that every worker shares.")
    geo = Geo(settings.geoip_city, settings.geoip_asn)  # fail fast, before any logging
    setup_logging("steering")
    if workers > 1 and args.worker is None:
        Steering(settings, geo)  # the settings' own errors, said once, before any worker
        geo.close()  # each worker opens its own readers
        try:
            reservation, dns_port, http_port = reserve(settings.host, settings.dns_port,
                                                       settings.http_port)
        except OSError as exc:
            raise ConfigError(
                f"Cannot listen on {settings.host} (DNS port {settings.dns_port}, HTTP port "
                f"{settings.http_port}): {exc.strerror or exc}."
            ) from None
        return Supervisor(argv, workers, settings.host, settings.zone, dns_port,
                          http_port).run(reservation)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio works too
        asyncio.run(serve(settings, geo, args.worker, reload, args.config, args.udp_fd))
    else:
        uvloop.run(serve(settings, geo, args.worker, reload, args.config, args.udp_fd))
    finally:
        geo.close()
    return 0
