"""Child processes that cannot outlive their parent: start, wait until healthy, stop, kill.

`vcdn up` and the end-to-end tests run every service as a real subprocess
(``python -m vcdn.cli ...``). Three things keep a crashed or interrupted run from leaving
orphans behind:

* every child asks the kernel for SIGTERM when its parent dies (Linux ``PR_SET_PDEATHSIG``),
  so even a SIGKILLed ``vcdn up`` takes its services with it;
* children stay in the parent's process group, so Ctrl-C in a terminal reaches them all;
* `stop` sends SIGTERM, waits a grace period, then SIGKILLs what is left.

A service's output goes to a log file, never to the terminal the summary is printed on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

import aiohttp

from vcdn.errors import VcdnError
from vcdn.tls_io import client_connector

STOP_GRACE: Final = 5.0
HEALTH_POLL: Final = 0.1
_PR_SET_PDEATHSIG: Final = 1


class ServiceFailed(VcdnError):
    """A service did not start or exited unexpectedly."""


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM us when the parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_HANDED_OUT: set[int] = set()


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port that is free now for TCP (and, for DNS, for UDP too), and not one this
    process handed out before: services are started after all their ports are chosen, so
    a port chosen earlier may still be unbound and the kernel may offer it again."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port in _HANDED_OUT:
            continue
        if kind == socket.SOCK_STREAM:
            _HANDED_OUT.add(port)
            return port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port


def vcdn_argv(*args: str) -> list[str]:
    """The command line of a `vcdn` subcommand run by this same interpreter."""
    return [sys.executable, "-m", "vcdn.cli", *args]


class Proc:
    """One child process with its log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        health_url: str | None = None,
        ca_bundle: Path | None = None,
    ) -> None:
        self.ca_bundle = ca_bundle  # an https:// health URL is verified against it
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self.health_url = health_url
        self.process: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def _open_log(self) -> IO[bytes]:
        """Append to the log (a restarted service keeps its history); closed in `_reap`."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"--- start {time.strftime('%H:%M:%S')}: {' '.join(self.argv)}\n".encode())
        log.flush()
        return log

    async def start(self) -> None:
        self._log = self._open_log()
        self.started_at = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            env=self.env,
            cwd=self.cwd,
            preexec_fn=_die_with_parent,
        )

    def tail(self, lines: int = 15) -> str:
        """The end of the log, for error messages that say why a service died."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    async def wait_healthy(self, within: float = 20.0) -> None:
        """Poll `health_url` until it answers 200; fail fast if the process exits."""
        if self.health_url is None:
            return
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession(connector=client_connector(self.ca_bundle)) as session:
            while True:
                if not self.running:
                    code = self.process.returncode if self.process else None
                    raise ServiceFailed(
                        f"{self.name} exited with status {code} before it was healthy; "
                        f"the end of {self.log_path}:\n{self.tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(
                        self.health_url, timeout=aiohttp.ClientTimeout(total=1)
                    ) as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise ServiceFailed(
                        f"{self.name} did not answer {self.health_url} within {within:.0f} s; "
                        f"the end of {self.log_path}:\n{self.tail()}"
                    )
                await asyncio.sleep(HEALTH_POLL)

    def kill(self) -> None:
        """SIGKILL: the crash a chaos test wants, no goodbye."""
        if self.running and self.process is not None:
            self.process.kill()

    async def wait(self) -> int:
        assert self.process is not None
        code = await self.process.wait()
        self._reap()
        return code

    async def stop(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit status."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        self._reap()
        return self.process.returncode

    def _reap(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


async def stop_all(procs: Sequence[Proc], grace: float = STOP_GRACE) -> None:
    """Stop every process at once (each SIGTERM, then SIGKILL the slow ones)."""
    await asyncio.gather(*(p.stop(grace) for p in procs), return_exceptions=True)


async def run_to_end(
    name: str, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
    within: float = 600.0,
) -> None:
    """Run a one-shot command (the packager, appliance-ctl) and fail with its log if it fails."""
    proc = Proc(name, argv, log_path=log_path, env=env)
    await proc.start()
    try:
        code = await asyncio.wait_for(proc.wait(), within)
    except TimeoutError:
        await proc.stop(1.0)
        raise ServiceFailed(f"{name} took longer than {within:.0f} s; see {log_path}.") from None
    except asyncio.CancelledError:
        await proc.stop(1.0)
        raise
    if code != 0:
        raise ServiceFailed(
            f"{name} failed with status {code}; the end of {log_path}:\n{proc.tail()}"
        )
