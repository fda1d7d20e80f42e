"""`vcdn edge`: the edge cache engine alone, as a caching reverse proxy.

    vcdn edge --cache-dir DIR --capacity 10GiB --upstream URL [--peer URL ...]
              [--auth tokens|none] [--host H] [--port P] [--workers N] [--config FILE]
              [--tls-cert FILE --tls-key FILE [--tls-port P]]

``--auth none`` makes it a plain RFC 9111 caching reverse proxy that maps every path onto
the upstream (a parent tier); ``--auth tokens`` (the default) serves signed video URLs
with keys from ``VCDN_SIGNING_KEYS`` or the settings file, never from the command line.
``--tls-cert``/``--tls-key`` serve HTTPS: on ``--port``, or on ``--tls-port`` beside plain
HTTP on ``--port`` (more chains for SNI in ``tls_certs``), every worker on both.
Prints one line saying where it listens, logs JSON, and drains on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path

from edge.settings import EdgeSettings
from edge.store import CacheStore
from vcdn.errors import ConfigError
from vcdn.logs import event, setup_logging
from vcdn.settings import load_settings
from vcdn.tls import add_tls_args, tls_overrides

log = logging.getLogger("vcdn.edge")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="vcdn edge",
        description="Run the edge cache engine alone (a caching reverse proxy).",
        epilog="Signing keys come from VCDN_SIGNING_KEYS or the settings file "
        '(signing_keys = "kid:secret,...").',
    )
    p.add_argument("--cache-dir", dest="cache_dir", help="directory of the disk cache")
    p.add_argument("--capacity", help="cache size, e.g. 10GiB (default 10GiB)")
    p.add_argument("--upstream", help="parent or origin base URL, e.g. http://127.0.0.1:8000")
    p.add_argument(
        "--peer",
        action="append",
        dest="peers",
        metavar="URL",
        help="an appliance of the same site, asked first (repeatable)",
    )
    p.add_argument(
        "--auth",
        choices=("tokens", "none"),
        help="tokens: signed /s/ URLs (default); none: plain reverse proxy",
    )
    p.add_argument(
        "--mode", choices=("appliance", "proxy"), help="override the mode implied by --auth"
    )
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8080; 0 picks one)")
    p.add_argument("--workers", type=int, help="processes sharing the port (default: CPUs)")
    add_tls_args(p)
    p.add_argument("--config", type=Path, help="TOML settings file")
    p.add_argument("--log-level", dest="log_level", help="debug, info, warning or error")
    return p.parse_args(argv)


def build_settings(argv: list[str]) -> EdgeSettings:
    args = parse_args(argv)
    mode = args.mode
    if mode is None and args.auth is not None:
        mode = "proxy" if args.auth == "none" else "appliance"
    overrides = {
        "cache_dir": args.cache_dir,
        "capacity": args.capacity,
        "upstream": args.upstream,
        "peers": args.peers,
        "auth": args.auth,
        "mode": mode,
        "host": args.host,
        "port": args.port,
        "workers": args.workers,
        "log_level": args.log_level,
        **tls_overrides(args),
    }
    overrides["config_file"] = args.config
    return load_settings(EdgeSettings, args.config, overrides=overrides)


def main(argv: list[str]) -> int:
    settings = build_settings(argv)
    setup_logging("edge", settings.log_level)
    try:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"Cache directory '{settings.cache_dir}' cannot be created: {exc.strerror}."
        ) from None
    # Reconcile once, before any worker touches the store: it deletes temp files, which
    # would be live fills if a worker were already running.
    store = CacheStore(settings.cache_dir, settings.capacity)
    report = store.reconcile(load=False)
    store.close()
    event(log, "cache_reconciled", **dataclasses.asdict(report))
    workers = settings.workers or os.cpu_count() or 1
    from edge.workers import run

    return run(settings, workers, reload=lambda: build_settings(argv))
