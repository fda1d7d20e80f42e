"""Running an aiohttp app as a vcdn HTTP service: limits, one ready line, clean stop.

`ServerLimits` gathers the defences against abusive clients:

* request line and header fields longer than ``max_line_size``/``max_field_size`` or more
  than ``max_headers`` fields → 400 from aiohttp's parser;
* ``keepalive_timeout`` bounds both an idle keep-alive connection and a client that
  dribbles its request head: aiohttp arms that timer when the connection opens and data
  arriving does not re-arm it, so a slowloris client is cut at this deadline;
* ``max_connections``: a connection beyond the cap is closed as soon as it is accepted;
* slow readers are cut by `vcdn.httpserve.send.SEND_TIMEOUT`.

`run_until_signal` starts the site, calls ``ready(url)`` with the real address (so
``--port 0`` works in tests), waits for SIGTERM/SIGINT, then shuts down with a grace
period for requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from vcdn.errors import ConfigError
from vcdn.logs import event

log = logging.getLogger("vcdn.httpserve")


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_line_size: int = 8190
    max_field_size: int = 8190
    max_headers: int = 100
    keepalive_timeout: float = 20.0
    max_connections: int = 10000
    shutdown_timeout: float = 5.0
    backlog: int = 1024

    def handler_args(self) -> dict[str, Any]:
        """Keyword arguments for `web.AppRunner` (passed on to aiohttp's RequestHandler)."""
        return {
            "max_line_size": self.max_line_size,
            "max_field_size": self.max_field_size,
            "max_headers": self.max_headers,
            "keepalive_timeout": self.keepalive_timeout,
        }


def cap_connections(server: web.Server, limit: int) -> None:
    """Close connections accepted beyond `limit` open ones."""
    accept = server.connection_made

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        accept(handler, transport)
        if len(server.connections) > limit:
            event(log, "connection_refused", logging.WARNING, reason="max_connections", limit=limit)
            transport.close()

    server.connection_made = connection_made  # type: ignore[method-assign]


ServerHook = Callable[[web.Server], None]


async def start(
    app: web.Application,
    host: str,
    port: int,
    limits: ServerLimits,
    *,
    reuse_port: bool = False,
    on_server: ServerHook | None = None,
) -> tuple[web.AppRunner, str]:
    """Start serving `app`; returns the runner (for `cleanup`) and the base URL.

    `on_server` sees aiohttp's low-level server before the first connection (e.g. to
    install `vcdn.httpserve.hot.install_fast_path`).
    """
    runner = web.AppRunner(app, handle_signals=False, access_log=None, **limits.handler_args())
    await runner.setup()
    assert runner.server is not None
    cap_connections(runner.server, limits.max_connections)
    if on_server is not None:
        on_server(runner.server)
    site = web.TCPSite(
        runner,
        host,
        port,
        backlog=limits.backlog,
        shutdown_timeout=limits.shutdown_timeout,
        reuse_port=reuse_port or None,
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    bound = runner.addresses[0]
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    return runner, f"http://{shown}:{bound[1]}"


async def run_until_signal(
    app: web.Application,
    host: str,
    port: int,
    limits: ServerLimits,
    ready: Callable[[str], None],
    *,
    on_server: ServerHook | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner, url = await start(app, host, port, limits, on_server=on_server)
    try:
        ready(url)
        await stop.wait()
        event(log, "stopping")
    finally:
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
