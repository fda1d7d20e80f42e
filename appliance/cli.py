"""`vcdn appliance --config FILE.toml`: run one appliance (edge + control loops).

Flags override values from the file (and `VCDN_*` environment), except secrets, which
come only from the file, a ``*_file`` it names, or the environment. The process prints
where it listens on stdout and logs JSON lines on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from appliance import settings as settings_mod
from vcdn.control_client import URLS_ENV
from vcdn.logs import setup_logging

# (flag, setting, type, help): the non-secret settings an operator may override.
FLAGS: tuple[tuple[str, str, Any, str], ...] = (
    ("--id", "id", str, "appliance id"),
    ("--site", "site", str, "site id (appliances of a site fill from each other)"),
    ("--public-url", "public_url", str, "the URL clients and peers reach this appliance at"),
    ("--host", "host", str, "address the edge listens on"),
    ("--port", "port", int, "port the edge listens on"),
    ("--cache-dir", "cache_dir", Path, "cache directory"),
    ("--capacity", "cache_capacity", str, "cache capacity, e.g. 500GiB"),
    ("--control-url", "control_url", str, "control-plane base URL(s), comma-separated"),
    ("--origin-url", "origin_url", str, "origin base URL"),
    ("--fill-window", "fill_window", str, "local-time fill window, e.g. 02:00-14:00 or always"),
    ("--fill-bandwidth", "fill_bandwidth", str, "fill bandwidth cap in bytes/s, e.g. 50MB"),
    ("--fill-concurrency", "fill_concurrency", int, "files fetched at once by the fill"),
    ("--heartbeat-interval", "heartbeat_interval", float, "seconds between heartbeats"),
    ("--admin-host", "admin_host", str, "address of the admin API (default 127.0.0.1)"),
    ("--admin-port", "admin_port", int, "port of the admin API"),
    ("--auth", "auth", str, "tokens (signed URLs only) or none (labs)"),
    ("--log-level", "log_level", str, "debug, info, warning or error"),
    ("--tls-url", "tls_url", str, "the HTTPS URL players reach this appliance at"),
    ("--tls-cert", "tls_cert", Path, "PEM certificate chain (admin_tls, ACME's output)"),
    ("--tls-key", "tls_key", Path, "PEM key of --tls-cert"),
    ("--tls-port", "tls_port", int, "serve video over HTTPS on this port too (plain HTTP "
     "stays on --port)"),
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vcdn appliance",
        description="Run an appliance: the edge cache plus register, heartbeat and fill.",
        epilog="Secrets (control_token, operator_token, signing_keys) come from the settings "
        "file, a *_file setting or VCDN_CONTROL_TOKEN / VCDN_OPERATOR_TOKEN / "
        "VCDN_SIGNING_KEYS, never from flags. See packaging/appliance.toml.",
    )
    p.add_argument("--config", type=Path, required=True, help="settings file (TOML)")
    for flag, dest, kind, text in FLAGS:
        p.add_argument(flag, dest=dest, type=kind, help=text)
    p.add_argument(
        "--control", dest="controls", action="append", metavar="URL",
        help="a control replica's base URL; repeat for each (default: $VCDN_CONTROL_URLS)",
    )
    return p


def control_override(args: argparse.Namespace) -> str | None:
    """`--control` (repeated), else `--control-url`, else ``VCDN_CONTROL_URLS``: the
    replicas as one comma-separated `control_url` (None: the settings file decides)."""
    urls = [*(args.controls or []), *([args.control_url] if args.control_url else [])]
    if not urls and os.environ.get(URLS_ENV, "").strip():
        urls = [os.environ[URLS_ENV]]
    return ",".join(urls) if urls else None


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    overrides = {dest: getattr(args, dest) for _, dest, _, _ in FLAGS}
    overrides["control_url"] = control_override(args)
    settings = settings_mod.load(args.config, overrides)
    setup_logging("appliance", settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio works too
        pass
    from appliance.daemon import run

    def ready(urls: dict[str, str]) -> None:
        print(
            f"vcdn appliance {settings.id} (site {settings.site}) listening on {urls['public']} "
            f"(public {settings.public_url}), admin API on {urls['admin']}"
            + (f", HTTPS on {urls['public_tls']}" if "public_tls" in urls else ""),
            flush=True,
        )

    run(settings, ready, reload=lambda: settings_mod.load(args.config, overrides),
        config=args.config)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
