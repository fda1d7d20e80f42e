"""Run ExaBGP for the appliance and feed what it hears into the RIB (`appliance.bgp`).

ExaBGP holds the session with the ISP's router; its helper (`appliance.bgp_relay`)
copies each JSON message into a Unix socket we serve; we parse, update the RIB and call
`on_change(prefixes)` when the set of learned prefixes changes. If ExaBGP exits we mark
the session down (its routes are withdrawn) and start it again after a backoff. ExaBGP's
own log lines become `bgp_log` events, so the appliance's stderr stays one JSON object per
line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

import appliance
from appliance.bgp import BgpEvent, BgpPeer, Rib, exabgp_config, parse_line
from vcdn.backoff import Backoff
from vcdn.logs import event

log = logging.getLogger("vcdn.appliance.bgp")
MAX_SOCKET_PATH: Final = 100  # sun_path is 108 bytes on Linux
# One UPDATE as JSON; a BGP message is at most 4 KiB, 64 KiB with RFC 8654.
MAX_LINE: Final = 1024 * 1024


def exabgp_env(peer: BgpPeer) -> dict[str, str]:
    """ExaBGP settings by environment: no listener, no CLI pipes, no privilege drop (the
    service already runs unprivileged), logs on stdout for us to relay."""
    package_root = str(Path(appliance.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": package_root + (os.pathsep + path if path else ""),
        "exabgp.tcp.bind": "",
        "exabgp.api.cli": "false",
        "exabgp.daemon.drop": "false",
        "exabgp.daemon.daemonize": "false",
        "exabgp.log.destination": "stdout",
        "exabgp.log.short": "true",
    }


class BgpSpeaker:
    """Supervises one ExaBGP process and keeps the RIB it reports (see module doc)."""

    def __init__(
        self, peer: BgpPeer, workdir: Path, on_change: Callable[[tuple[str, ...]], None]
    ) -> None:
        self.peer = peer
        self.workdir = workdir
        self.on_change = on_change
        self.rib = Rib()
        self.restarts = 0
        self._process: asyncio.subprocess.Process | None = None

    @property
    def state(self) -> str:
        return self.rib.states.get(self.peer.neighbor, "idle")

    def _apply(self, ev: BgpEvent) -> None:
        if ev.kind == "state":
            event(log, "bgp_session", peer=ev.peer, state=ev.state)
        if self.rib.apply(ev):
            prefixes = self.rib.prefixes()
            event(log, "bgp_prefixes", peer=ev.peer, count=len(prefixes))
            self.on_change(prefixes)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                ev = parse_line(line.decode("utf-8", "replace"))
                if ev is not None:
                    self._apply(ev)
        except (ValueError, ConnectionError):  # an over-long line, a helper that died
            pass
        finally:
            writer.close()

    async def _relay_logs(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                event(log, "bgp_log", logging.DEBUG, line=text)

    def _socket_path(self) -> Path:
        path = self.workdir / "bgp.sock"
        if len(str(path)) <= MAX_SOCKET_PATH:
            return path
        return Path(tempfile.mkdtemp(prefix="vcdn-bgp-")) / "bgp.sock"

    async def run(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        sock = self._socket_path()
        sock.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._client, path=str(sock), limit=MAX_LINE)
        conf = self.workdir / "exabgp.conf"
        relay = [sys.executable, "-m", "appliance.bgp_relay", str(sock)]
        conf.write_text(exabgp_config(self.peer, relay))
        backoff = Backoff(base=1.0, cap=30.0)
        try:
            while True:
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "exabgp", "server", str(conf),
                    env=exabgp_env(self.peer), cwd=self.workdir,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
                event(log, "bgp_started", neighbor=self.peer.neighbor, port=self.peer.port,
                      pid=self._process.pid)
                assert self._process.stdout is not None
                await self._relay_logs(self._process.stdout)
                code = await self._process.wait()
                self._apply(BgpEvent("state", self.peer.neighbor, state="down"))
                self.restarts += 1
                delay = backoff.next_delay()
                event(log, "bgp_exited", logging.WARNING, code=code, retry_in=round(delay, 2))
                await asyncio.sleep(delay)
        finally:
            await self._stop()
            server.close()
            sock.unlink(missing_ok=True)

    async def _stop(self) -> None:
        proc = self._process
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
