"""`vcdn origin --root DIR [--host H] [--port P] [--config FILE.toml]`.

Runs on uvloop, prints one line saying where it listens (the real port when ``--port 0``),
logs JSON, and stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from origin.content.settings import OriginSettings
from vcdn.errors import ConfigError
from vcdn.httpserve.server import run_until_signal
from vcdn.logs import event, setup_logging
from vcdn.settings import load_settings
from vcdn.tls import add_tls_args, tls_overrides

log = logging.getLogger("vcdn.origin")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vcdn origin", description="Serve the origin content store.")
    p.add_argument("--root", help="content store directory written by `vcdn package`")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8080; 0 picks one)")
    p.add_argument("--config", type=Path, help="TOML settings file")
    add_tls_args(p)
    p.add_argument("--log-level", dest="log_level", help="debug, info, warning or error")
    return p.parse_args(argv)


def build_settings(argv: list[str]) -> OriginSettings:
    args = parse_args(argv)
    overrides = {
        "root": args.root,
        "host": args.host,
        "port": args.port,
        "log_level": args.log_level,
        **tls_overrides(args),
    }
    settings = load_settings(
        OriginSettings, args.config, overrides=overrides, env_prefix="VCDN_ORIGIN_"
    )
    if not settings.root.is_dir():
        raise ConfigError(f"Content root '{settings.root}' is not a directory; pass --root DIR.")
    return settings


async def serve(settings: OriginSettings) -> None:
    from origin.content.app import hit_answer, make_app

    limits = settings.http_limits()

    def ready(url: str) -> None:
        print(f"vcdn origin listening on {url} (root {settings.root.resolve()})", flush=True)
        loop = type(asyncio.get_running_loop()).__module__  # "uvloop" in production
        event(log, "listening", url=url, root=str(settings.root.resolve()), loop=loop)

    app = make_app(settings)
    await run_until_signal(
        app, settings.host, settings.port, limits, ready,
        answer=hit_answer(app), tls=settings,
    )
    event(log, "stopped")


def main(argv: list[str]) -> int:
    settings = build_settings(argv)
    setup_logging("origin", settings.log_level)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
