"""Running N edge workers on one port (SO_REUSEPORT) over one disk cache.

The parent binds the address first (so ``--port 0`` resolves to one real port that every
worker shares), forks the workers before any event loop exists, prints the ready line
once all of them listen, forwards SIGTERM/SIGINT, and restarts a worker that dies on its
own. Each worker is a complete edge: its own event loop (uvloop), aiohttp server, upstream
session and in-memory view of the shared store; `edge.fill` keeps fills single across them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Final

from aiohttp import web

from edge.settings import EdgeSettings
from vcdn.errors import ConfigError
from vcdn.httplimits import install as install_limits
from vcdn.httpserve.hitproto import HitSite
from vcdn.httpserve.hot import install_answer
from vcdn.httpserve.server import BACKLOG
from vcdn.keyreload import KeyWatch
from vcdn.logs import event
from vcdn.metrics import share_across_processes

log = logging.getLogger("vcdn.edge")
#: A worker that keeps dying this soon after start is not restarted in a tight loop.
RESTART_PAUSE: Final = 1.0
Reload = Callable[[], EdgeSettings]
DRAIN_SECONDS: Final = 10.0
_STOP_SIGNALS: Final = {signal.SIGTERM, signal.SIGINT}


def _reserve(host: str, port: int) -> tuple[socket.socket, int]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"Cannot listen on {host}:{port} (settings 'host' and 'port'): {exc.strerror or exc}."
        ) from None
    return sock, sock.getsockname()[1]


async def start_edge(
    app: web.Application, settings: EdgeSettings, *, shutdown_timeout: float | None = None
) -> tuple[web.AppRunner, str]:
    """Start `app` on its own SO_REUSEPORT socket; connections begin on the hit fast path.

    The appliance passes its own drain timeout as `shutdown_timeout`.
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
    sock, port = _reserve(settings.host, settings.port)

    def handed_off() -> None:
        edge.stats.handoffs += 1

    site = HitSite(
        runner,
        sock,
        head_answer(edge),
        limits=limits,
        shutdown_timeout=grace,
        backlog=BACKLOG,
        on_handoff=handed_off,
    )
    await site.start()
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    return runner, f"http://{shown}:{port}"


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
    of the settings or keys file) reloads the signing keys."""
    from edge.app import make_app

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = make_app(settings)
    runner, url = await start_edge(app, settings)
    watcher = asyncio.create_task(_watch(app, settings, reload).run())
    try:
        if ready is not None:
            os.write(ready, url.encode() + b"\n")
        else:
            print(
                f"vcdn edge listening on {url} (1 worker, cache {settings.cache_dir})", flush=True
            )
        event(log, "listening", url=url, pid=os.getpid())
        await stop.wait()
        event(log, "draining", pid=os.getpid())
    finally:
        watcher.cancel()
        await runner.cleanup()


def _worker_main(settings: EdgeSettings, ready: int | None, reload: Reload | None) -> None:
    try:
        import uvloop

        uvloop.run(serve(settings, ready, reload))
    except KeyboardInterrupt:
        pass


def _spawn(settings: EdgeSettings, ready: int | None, reload: Reload | None) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
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
    reserved, port = _reserve(settings.host, settings.port)
    settings = dataclasses.replace(settings, port=port)
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
    urls: list[str] = []
    buf = b""
    while len(urls) < workers:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        urls += [line.decode() for line in lines if line]
    if urls:
        print(
            f"vcdn edge listening on {urls[0]} ({workers} workers, cache {settings.cache_dir})",
            flush=True,
        )
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
    reserved.close()
    os.close(r)
    os.close(w)
    return 0 if stopping else code
