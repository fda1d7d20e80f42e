"""`vcdn steering --workers N`: N worker processes sharing the DNS (UDP and TCP) and HTTP
ports with SO_REUSEPORT, so that the kernel spreads queries over N cores.

Each worker is a whole `vcdn steering` (its own poll of the control plane, view and
compiled mapping): the same inputs give the same view, so every worker answers a query
identically, and no worker waits on another. The supervisor reserves the ports (port 0
picks one), starts the workers, waits until each says it listens, then lets its own
reservation go. Its UDP socket is in the port's SO_REUSEPORT group from the start, so
the kernel queues on it every query that arrives before a worker listens, and a share of
those that arrive until it is closed: the first worker is handed that very socket and
answers them, instead of their being dropped with it.
It restarts a worker that dies, and on SIGHUP reloads gracefully: a new generation of
workers is started beside the old one and the old one is stopped only once the new one
listens, so the ports never go unserved. The SOA serial is fixed by the supervisor and
shared, and each worker answers RFC 5001 NSID queries with `<generation>.<index>`, which
is how a client (or a test) can tell which worker answered.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Final

from steering.dns_server import UDP_RCVBUF
from vcdn.errors import ConfigError
from vcdn.logs import event

log = logging.getLogger("steering")

READY_SECONDS: Final = 60.0
STOP_SECONDS: Final = 10.0
RESTART_BACKOFF: Final = 1.0
BIND_ATTEMPTS: Final = 20
_PR_SET_PDEATHSIG: Final = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """A worker must not outlive a supervisor killed with SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _sock(family: int, kind: int, host: str, port: int) -> socket.socket:
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        s.bind((host, port))
    except OSError:
        s.close()
        raise
    return s


def reserve(host: str, dns_port: int, http_port: int) -> tuple[list[socket.socket], int, int]:
    """Hold the DNS (UDP+TCP) and HTTP ports with SO_REUSEPORT until the workers bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for attempt in range(BIND_ATTEMPTS):
        udp = _sock(family, socket.SOCK_DGRAM, host, dns_port)
        # Queries queue on it until the first worker, which is handed it, reads them.
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        port = udp.getsockname()[1]
        try:
            tcp = _sock(family, socket.SOCK_STREAM, host, port)
        except OSError:
            udp.close()
            if dns_port or attempt == BIND_ATTEMPTS - 1:
                raise
            continue
        try:
            http = _sock(family, socket.SOCK_STREAM, host, http_port)
        except OSError:
            udp.close()
            tcp.close()
            raise
        return [udp, tcp, http], port, http.getsockname()[1]
    raise AssertionError("unreachable")


class Supervisor:
    def __init__(self, argv: list[str], workers: int, host: str, zone: str,
                 dns_port: int, http_port: int) -> None:
        self.argv = argv
        self.n = workers
        self.host = host
        self.zone = zone
        self.dns_port = dns_port
        self.http_port = http_port
        self.serial = int(time.time())
        self.generation = 0
        self.procs: list[subprocess.Popen[str]] = []
        self._stop = False
        self._reload = False
        #: The reservation's UDP socket, until the first worker has taken it over.
        self._udp: socket.socket | None = None

    def _spawn(self, index: int) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "vcdn.cli", "steering", *self.argv, "--workers", "1",
               "--dns-port", str(self.dns_port), "--http-port", str(self.http_port),
               "--worker", f"{self.serial}:{self.generation}.{index}"]
        fds: tuple[int, ...] = ()
        if index == 0 and self._udp is not None:
            fds = (self._udp.fileno(),)
            cmd += ["--udp-fd", str(fds[0])]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, pass_fds=fds,
                                preexec_fn=_die_with_parent)

    def _wait_ready(self, procs: list[subprocess.Popen[str]]) -> None:
        deadline = time.monotonic() + READY_SECONDS
        for p in procs:
            assert p.stdout is not None
            line = ""
            while not line:
                left = deadline - time.monotonic()
                if left <= 0 or p.poll() is not None:
                    break
                ready, _, _ = select.select([p.stdout], [], [], min(left, 0.5))
                if ready:
                    line = p.stdout.readline() or "EOF"
            if "DNS on" not in line:
                self._terminate(procs)
                raise ConfigError(f"A steering worker did not start (exit code {p.poll()}); "
                                  "its log above says why.")

    def _generation(self) -> list[subprocess.Popen[str]]:
        self.generation += 1
        procs = [self._spawn(i) for i in range(self.n)]
        self._wait_ready(procs)
        return procs

    @staticmethod
    def _terminate(procs: list[subprocess.Popen[str]]) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True

    def run(self, reservation: list[socket.socket]) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        self._udp = next((s for s in reservation if s.type == socket.SOCK_DGRAM), None)
        try:
            self.procs = self._generation()
        finally:
            self._udp = None  # a worker started later binds a socket of its own
            for s in reservation:
                s.close()
        host = f"[{self.host}]" if ":" in self.host else self.host
        print(f"vcdn steering: DNS on {host}:{self.dns_port} (UDP and TCP, {self.n} "
              f"workers) for zone {self.zone}; HTTP on http://{host}:{self.http_port}",
              flush=True)
        event(log, "workers_started", workers=self.n, pids=[p.pid for p in self.procs])
        try:
            while not self._stop:
                time.sleep(0.2)
                if self._reload:
                    self._reload = False
                    self._reload_workers()
                for i, p in enumerate(self.procs):
                    if p.poll() is not None and not self._stop:
                        event(log, "worker_died", level=logging.WARNING, index=i,
                              code=p.returncode)
                        time.sleep(RESTART_BACKOFF)
                        self.procs[i] = self._spawn(i)
                        with contextlib.suppress(ConfigError):
                            self._wait_ready([self.procs[i]])
        finally:
            self._terminate(self.procs)
        return 0

    def _reload_workers(self) -> None:
        old = self.procs
        try:
            new = self._generation()
        except ConfigError as exc:
            event(log, "reload_failed", level=logging.ERROR, error=exc.message)
            return  # the running generation keeps serving
        self.procs = new
        self._terminate(old)
        event(log, "workers_reloaded", generation=self.generation,
              pids=[p.pid for p in new])


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
