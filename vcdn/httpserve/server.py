"""Running an aiohttp app as a vcdn HTTP service: limits, one ready line, clean stop.

Every listener goes through `start`, which puts `vcdn.httplimits` on it (head and body
limits and timeouts, keep-alive idle timeout, connection cap); slow readers are cut by
`vcdn.httpserve.send.SEND_TIMEOUT`. With an owner's hit `answer` (`vcdn.httpserve.hit`),
plain HTTP connections start in the hit connection protocol (`vcdn.httpserve.hitproto`)
and every other connection gets the same answers before routing (`hot.install_answer`).

`run_until_signal` starts the site, calls ``ready(url)`` with the real address (so
``--port 0`` works in tests), waits for SIGTERM/SIGINT, then shuts down with a grace
period for requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from typing import Final

from aiohttp import web

from vcdn.errors import ConfigError
from vcdn.httplimits import HttpLimits, install
from vcdn.httpserve.hit import Answer
from vcdn.httpserve.hitsite import HitSite
from vcdn.httpserve.hot import install_answer
from vcdn.logs import event
from vcdn.tls import TlsOptions
from vcdn.tls_io import CertStore, CertWatch, listener

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
    ssl_context: ssl.SSLContext | None = None,
    answer: Answer | None = None,
) -> tuple[web.AppRunner, str]:
    """Start serving `app`; returns the runner (for `cleanup`) and the base URL.

    `on_server` sees aiohttp's low-level server before the first connection; `answer`
    (an owner's hits) makes plain HTTP connections start in the hit protocol. With
    `ssl_context` the listener speaks HTTPS (`vcdn.tls_io.CertStore.context`); `add_site`
    adds a second listener.
    """
    runner = web.AppRunner(app, handle_signals=False, access_log=None, **limits.runner_args())
    await runner.setup()
    assert runner.server is not None
    if on_server is not None:
        on_server(runner.server)
    if answer is not None:
        install_answer(runner.server, answer)
    install(runner.server, limits)  # outermost: hits answered before routing too
    try:
        url = await add_site(runner, host, port, ssl_context, reuse_port=reuse_port,
                             shutdown_timeout=shutdown_timeout, answer=answer, limits=limits)
    except ConfigError:
        await runner.cleanup()
        raise
    return runner, url


async def add_site(
    runner: web.AppRunner,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    *,
    reuse_port: bool = False,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    answer: Answer | None = None,
    limits: HttpLimits | None = None,
) -> str:
    """One more listener for a started runner (HTTPS beside HTTP); returns its URL. With
    `answer` (and the runner's `limits`), a plain HTTP listener speaks the hit protocol."""
    site: web.BaseSite
    try:
        if ssl_context is None and answer is not None:
            site = HitSite(runner, _listen_socket(host, port, reuse_port), answer,
                           limits=limits or HttpLimits(), shutdown_timeout=shutdown_timeout,
                           backlog=BACKLOG)
        elif ssl_context is None:
            site = web.TCPSite(runner, host, port, backlog=BACKLOG,
                               shutdown_timeout=shutdown_timeout, reuse_port=reuse_port or None)
        else:
            site = web.SockSite(runner, _listen_socket(host, port, reuse_port),
                                shutdown_timeout=shutdown_timeout, ssl_context=ssl_context)
        await site.start()
    except OSError as exc:
        raise ConfigError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    bound = runner.addresses[-1]
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    scheme = "https" if ssl_context is not None else "http"
    return f"{scheme}://{shown}:{bound[1]}"


def _listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A listening socket with TCP_NODELAY, which Linux passes on to every accepted socket.

    aiohttp sets TCP_NODELAY when a connection is made, and over TLS that is after the
    handshake: the handshake's flights would meet Nagle and the peer's delayed ACK (about
    40 ms per TLS 1.2 handshake, measured by bench.tls). The first address of `host` is
    used (TCPSite binds all of them)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def start_service(
    app: web.Application,
    host: str,
    port: int,
    limits: HttpLimits,
    tls: TlsOptions,
    *,
    reuse_port: bool = False,
    on_server: ServerHook | None = None,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    answer: Answer | None = None,
) -> tuple[web.AppRunner, list[str], CertStore | None]:
    """A service's listeners from its settings: HTTP on `port`; with a certificate,
    HTTPS there instead, or beside it on `tls_port`. Returns the runner, every URL
    (HTTP first) and the certificate store to reload (None without TLS)."""
    store = listener(tls.cert_pairs(), tls.tls_client_ca)
    context = store.context if store is not None else None
    both = context is not None and tls.tls_port is not None
    runner, url = await start(app, host, port, limits, reuse_port=reuse_port,
                              on_server=on_server, shutdown_timeout=shutdown_timeout,
                              ssl_context=None if both else context, answer=answer)
    urls = [url]
    if both:
        assert tls.tls_port is not None
        try:
            urls.append(await add_site(runner, host, tls.tls_port, context,
                                       reuse_port=reuse_port, shutdown_timeout=shutdown_timeout))
        except ConfigError:
            await runner.cleanup()
            raise
    return runner, urls, store


async def run_until_signal(
    app: web.Application,
    host: str,
    port: int,
    limits: HttpLimits,
    ready: Callable[[str], None],
    *,
    on_server: ServerHook | None = None,
    tls: TlsOptions | None = None,
    answer: Answer | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly. With `tls`, its certificates
    are reloaded on SIGHUP and on file change; `ready` is called once per listener."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner, urls, store = await start_service(app, host, port, limits, tls or TlsOptions(),
                                              on_server=on_server, answer=answer)
    watcher = asyncio.create_task(CertWatch(store).run()) if store is not None else None
    try:
        for url in urls:
            ready(url)
        await stop.wait()
        event(log, "stopping")
    finally:
        if watcher is not None:
            watcher.cancel()
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
