"""Running N edge workers on one port (SO_REUSEPORT) over one disk cache.

The parent binds the address first (so ``--port 0`` resolves to one real port that every
worker shares, and ``tls_port`` likewise), forks the workers before any event loop exists,
prints the ready lines once all of them listen, forwards SIGTERM/SIGINT/SIGHUP, and
restarts a worker that dies on its own. Each worker is a complete edge: its own event loop
(uvloop), aiohttp server, upstream session and in-memory view of the shared store;
`edge.fill` keeps fills single across them. With TLS every worker listens on both ports,
and reloads its certificates itself (SIGHUP, file change: `vcdn.tls_io.CertWatch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from edge.settings import EdgeSettings
from vcdn.errors import ConfigError
from vcdn.httplimits import install as install_limits
from vcdn.httpserve.hitsite import HitSite
from vcdn.httpserve.hot import install_answer
from vcdn.httpserve.server import BACKLOG
from vcdn.keyreload import KeyWatch
from vcdn.logs import event
from vcdn.metrics import share_across_processes
from vcdn.tls_io import CertStore, CertWatch, kernel_tls, listener, load_certs, tls_send_path

log = logging.getLogger("vcdn.edge")
#: A worker that keeps dying this soon after start is not restarted in a tight loop.
RESTART_PAUSE: Final = 1.0
Reload = Callable[[], EdgeSettings]
DRAIN_SECONDS: Final = 10.0
#: How often the parent looks for a worker that died before it listened.
START_POLL: Final = 0.5
_STOP_SIGNALS: Final = {signal.SIGTERM, signal.SIGINT}


def _reserve(host: str, port: int, key: str = "port") -> tuple[socket.socket, int]:
    """A bound (not yet listening) SO_REUSEPORT socket. TCP_NODELAY on it passes on to
    every accepted socket, so a TLS handshake's flights do not wait on Nagle and the
    peer's delayed ACK (`vcdn.httpserve.server._tls_socket`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"Cannot listen on {host}:{port} (settings 'host' and '{key}'): "
            f"{exc.strerror or exc}."
        ) from None
    return sock, sock.getsockname()[1]


@dataclass
class Listeners:
    """What `start_listeners` started: one runner, its URLs (HTTP first) and the
    certificates its HTTPS listener serves (to reload; None without TLS)."""

    runner: web.AppRunner
    urls: list[str]
    certs: CertStore | None


def _url(scheme: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


async def start_listeners(
    app: web.Application,
    settings: EdgeSettings,
    *,
    shutdown_timeout: float | None = None,
    certs: CertStore | None = None,
    https: bool = True,
) -> Listeners:
    """Start `app` on its own SO_REUSEPORT sockets; connections begin on the hit protocol.

    Plain HTTP on `port`; with a certificate (`certs`, else the settings' chains), HTTPS
    on `tls_port` beside it, or on `port` alone when there is no `tls_port`. Both
    listeners run the same hit protocol (`vcdn.httpserve.hitproto`) and hand misses to the same
    aiohttp app. ``https=False`` starts only the plain listener (`add_https` adds the
    other later: the appliance answers ACME's HTTP-01 on it first). The appliance
    passes its own drain timeout as `shutdown_timeout`.
    """
    from edge.app import EDGE_KEY
    from edge.fastpath import head_answer, install_crowds

    limits = settings.http_limits()
    grace = DRAIN_SECONDS if shutdown_timeout is None else shutdown_timeout
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=grace,
        **limits.runner_args(),
    )
    await runner.setup()
    assert runner.server is not None
    edge = app[EDGE_KEY]
    install_crowds(runner.server, edge)
    install_answer(runner.server, head_answer(edge))
    install_limits(runner.server, limits)  # outermost: hits answered before routing too
    tls_on_port = settings.tls_port is None and bool(settings.cert_pairs())
    try:
        if tls_on_port and certs is None:
            certs = listener(settings.cert_pairs(), settings.tls_client_ca)
        first = await _site(runner, app, settings, settings.port, "port", grace,
                            certs if tls_on_port else None)
        out = Listeners(runner, [first], certs if tls_on_port else None)
        if https and not tls_on_port and settings.tls_port is not None:
            await add_https(out, app, settings, certs, shutdown_timeout=grace)
    except BaseException:
        await runner.cleanup()
        raise
    return out


async def add_https(
    listeners: Listeners,
    app: web.Application,
    settings: EdgeSettings,
    certs: CertStore | None = None,
    *,
    shutdown_timeout: float | None = None,
) -> str:
    """The HTTPS listener on `tls_port` for started `listeners` (its URL is appended)."""
    assert settings.tls_port is not None
    if certs is None:
        certs = listener(settings.cert_pairs(), settings.tls_client_ca)
    grace = DRAIN_SECONDS if shutdown_timeout is None else shutdown_timeout
    url = await _site(listeners.runner, app, settings, settings.tls_port, "tls_port", grace,
                      certs)
    listeners.urls.append(url)
    listeners.certs = certs
    return url


async def _site(
    runner: web.AppRunner, app: web.Application, settings: EdgeSettings, port: int,
    key: str, grace: float, certs: CertStore | None,
) -> str:
    from edge.app import EDGE_KEY
    from edge.fastpath import head_answer

    edge = app[EDGE_KEY]

    def handed_off() -> None:
        edge.stats.handoffs += 1

    sock, bound = _reserve(settings.host, port, key)
    site = HitSite(
        runner, sock, head_answer(edge), limits=settings.http_limits(), shutdown_timeout=grace,
        backlog=BACKLOG, on_handoff=handed_off,
        ssl_context=certs.context if certs is not None else None,
    )
    try:
        await site.start()
    except BaseException:
        sock.close()
        raise
    if certs is not None:
        event(log, "tls_listening", port=bound, chains=[str(p.cert) for p in certs.certs.pairs],
              send_path=tls_send_path(), kernel_tls=kernel_tls().detail)
    return _url("https" if certs is not None else "http", settings.host, bound)


async def start_edge(
    app: web.Application, settings: EdgeSettings, *, shutdown_timeout: float | None = None
) -> tuple[web.AppRunner, str]:
    """`start_listeners`, returning the runner and the first listener's URL."""
    out = await start_listeners(app, settings, shutdown_timeout=shutdown_timeout)
    return out.runner, out.urls[0]


def _watch(app: web.Application, settings: EdgeSettings, reload: Reload | None) -> KeyWatch:
    from edge.app import EDGE_KEY

    edge = app[EDGE_KEY]
    files = [p for p in (settings.config_file, settings.signing_keys_file) if p is not None]
    return KeyWatch(
        (lambda: reload().keys()) if reload is not None else settings.keys,
        edge.set_keys,
        files,
        current=edge.keys,
    )


async def serve(settings: EdgeSettings, ready: int | None, reload: Reload | None = None) -> None:
    """One worker: serve until SIGTERM/SIGINT, then drain and stop; SIGHUP (or a change
    of the settings or keys file) reloads the signing keys, and the TLS chains (or a
    change of one of their files): new handshakes get them, open connections keep theirs."""
    from edge.app import make_app

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = make_app(settings)
    out = await start_listeners(app, settings)
    watchers = [asyncio.create_task(_watch(app, settings, reload).run())]
    if out.certs is not None:
        watchers.append(asyncio.create_task(CertWatch(out.certs).run()))
    try:
        if ready is not None:
            os.write(ready, " ".join(out.urls).encode() + b"\n")
        else:
            for url in out.urls:
                print(f"vcdn edge listening on {url} (1 worker, cache {settings.cache_dir})",
                      flush=True)
        event(log, "listening", urls=out.urls, pid=os.getpid())
        await stop.wait()
        event(log, "draining", pid=os.getpid())
    finally:
        for watcher in watchers:
            watcher.cancel()
        await out.runner.cleanup()


def _worker_main(settings: EdgeSettings, ready: int | None, reload: Reload | None) -> None:
    try:
        import uvloop

        uvloop.run(serve(settings, ready, reload))
    except KeyboardInterrupt:
        pass


def _reap(children: dict[int, float]) -> None:
    """Wait for every child still recorded (each was told to stop)."""
    while children:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            return
        except InterruptedError:
            continue
        children.pop(pid, None)


def _spawn(settings: EdgeSettings, ready: int | None, reload: Reload | None) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            # A reload forwarded before this worker's loop listens for SIGHUP must not
            # kill it (SIGHUP's default action): ignored until `KeyWatch` takes it.
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by spawn()
            _worker_main(settings, ready, reload)
        except BaseException:
            log.exception("worker_crashed")
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def run(settings: EdgeSettings, workers: int, reload: Reload | None = None) -> int:
    """Serve with `workers` processes; returns the exit code. `reload` rebuilds the
    settings as start-up did (on SIGHUP, which the parent forwards to every worker)."""
    if workers <= 1:
        _worker_main(settings, None, reload)
        return 0
    if settings.cert_pairs():
        load_certs(settings.cert_pairs(), settings.tls_client_ca)  # one line, not N workers'
    reserved, port = _reserve(settings.host, settings.port)
    held = [reserved]
    settings = dataclasses.replace(settings, port=port)
    if settings.tls_port is not None:
        # Port 0 resolved once, here, so that every worker shares the one HTTPS port too.
        tls_sock, tls_port = _reserve(settings.host, settings.tls_port, "tls_port")
        held.append(tls_sock)
        settings = dataclasses.replace(settings, tls_port=tls_port)
    # Before the fork: every worker's counters in files any worker's /metrics sums.
    share_across_processes(settings.cache_dir / "metrics")
    r, w = os.pipe()
    children: dict[int, float] = {}
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def spawn() -> None:
        # A stop signal between fork and recording the child would leave a worker nobody
        # tells to stop (and a parent waiting for it forever): hold them until recorded.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            children[_spawn(settings, w, reload)] = time.monotonic()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    def forward_hup(signum: int, _frame: object) -> None:
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward_hup)
    for _ in range(workers):
        spawn()
    started: list[list[str]] = []  # each worker's URLs, one line per worker
    buf = b""
    while len(started) < workers and not stopping:
        # A worker that dies before it listens (a port it cannot bind, a certificate it
        # cannot load) would leave this loop waiting for its line for ever.
        if not select.select([r], [], [], START_POLL)[0]:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid:
                children.pop(pid, None)
                event(log, "worker_failed_to_start", logging.ERROR, pid=pid,
                      exit=os.waitstatus_to_exitcode(status))
                forward(signal.SIGTERM, None)
                _reap(children)
                for sock in held:
                    sock.close()
                return 1
            continue
        chunk = os.read(r, 4096)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        started += [line.decode().split() for line in lines if line]
    for url in started[0] if started else ():
        print(f"vcdn edge listening on {url} ({workers} workers, cache {settings.cache_dir})",
              flush=True)
    code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        started = children.pop(pid, None)
        if started is None or stopping:
            continue
        code = os.waitstatus_to_exitcode(status)
        event(log, "worker_died", logging.ERROR, pid=pid, exit=code)
        if time.monotonic() - started < RESTART_PAUSE:
            time.sleep(RESTART_PAUSE)
            if stopping:  # told to stop during the pause: no new worker
                continue
        spawn()
    for sock in held:
        sock.close()
    os.close(r)
    os.close(w)
    return 0 if stopping else code
