"""Running an aiohttp app as a vcdn HTTP service: limits, one ready line, clean stop.

Every listener goes through `start`, which puts `vcdn.httplimits` on it (head and body
limits and timeouts, keep-alive idle timeout, connection cap); slow readers are cut by
`vcdn.httpserve.send.SEND_TIMEOUT`.

`run_until_signal` starts the site, calls ``ready(url)`` with the real address (so
``--port 0`` works in tests), waits for SIGTERM/SIGINT, then shuts down with a grace
period for requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Final

from aiohttp import web

from vcdn.errors import ConfigError
from vcdn.httplimits import HttpLimits, install
from vcdn.logs import event

log = logging.getLogger("vcdn.httpserve")
SHUTDOWN_TIMEOUT: Final = 5.0
BACKLOG: Final = 1024


ServerHook = Callable[[web.Server], None]


async def start(
    app: web.Application,
    host: str,
    port: int,
    limits: HttpLimits,
    *,
    reuse_port: bool = False,
    on_server: ServerHook | None = None,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
) -> tuple[web.AppRunner, str]:
    """Start serving `app`; returns the runner (for `cleanup`) and the base URL.

    `on_server` sees aiohttp's low-level server before the first connection (e.g. to
    install `vcdn.httpserve.hot.install_fast_path`).
    """
    runner = web.AppRunner(app, handle_signals=False, access_log=None, **limits.runner_args())
    await runner.setup()
    assert runner.server is not None
    if on_server is not None:
        on_server(runner.server)
    install(runner.server, limits)
    site = web.TCPSite(
        runner,
        host,
        port,
        backlog=BACKLOG,
        shutdown_timeout=shutdown_timeout,
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
    limits: HttpLimits,
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
