"""What docs/edge.md claims of real `vcdn edge` processes, each checked as claimed: hits
go out with sendfile(2) (strace), a leader worker killed with SIGKILL mid-fill never blocks
its key, a purge is seen by every worker, and a client that hangs up does not cancel the
fill that other viewers will want."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import aiohttp
import pytest

from edge.store import CacheStore
from tests.conftest import ROOT, require_tool
from tests.edge.conftest import KEYS, TITLE, signed
from tests.edge.scripted_origin import Script, ScriptedOrigin

pytestmark = pytest.mark.slow
MiB = 1024 * 1024


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCDN_")}
    env["VCDN_SIGNING_KEYS"] = KEYS
    env["PYTHONPATH"] = str(ROOT)
    return env


@asynccontextmanager
async def edge(cache: Path, upstream: str, workers: int,
               wrap: tuple[str, ...] = ()) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    proc = await asyncio.create_subprocess_exec(
        *wrap, sys.executable, "-m", "vcdn.cli", "edge", "--cache-dir", str(cache),
        "--upstream", upstream, "--port", "0", "--capacity", "256MiB",
        "--workers", str(workers), "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=_env(), cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert "listening on http://" in line, line
        yield proc, line.split("listening on ", 1)[1].split()[0]
    finally:
        if proc.returncode is None:
            # SIGTERM drains (fills publish); under strace, which holds fatal signals while
            # it traces, the edge itself must get it.
            kids = descendants(proc.pid)
            for pid in [proc.pid, *kids] if not wrap else kids[:1]:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                for pid in descendants(proc.pid):
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                proc.kill()
                await proc.wait()


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def writer_of(pids: list[int], directory: Path) -> int | None:
    """The process that holds a file in `directory` open for writing: a fill's leader
    writes its temp file, followers only read it (flags in /proc/PID/fdinfo, open(2))."""
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
                flags = Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text().split("flags:")[1]
            except OSError:
                continue
            if target.startswith(str(directory)) and int(flags.split()[0], 8) & 0o3:
                return pid
    return None


async def until(cond, within: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def indexed(cache: Path) -> list[str]:
    """Keys the shared index holds as ready (the fill published)."""
    db = sqlite3.connect(cache / "index.db")
    try:
        return [k for (k,) in db.execute("SELECT key FROM objects WHERE state='ready'")]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


async def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One request on a connection of its own (SO_REUSEPORT spreads them over workers)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        async with s.get(url, headers=headers or {}) as resp:
            return resp.status, await resp.read()


async def test_hits_are_sent_with_sendfile(aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """strace of a worker that only serves hits (the cache was filled by an earlier run of
    the edge on the same directory) counts sendfile calls for a whole large object and a
    large range, and the bytes are right."""
    strace = require_tool("strace")
    data = os.urandom(2 * MiB)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/big.m4s"] = Script(data, headers={"Cache-Control": "max-age=3600"})
    up = await aiohttp_server(origin.app)
    upstream = str(up.make_url("")).rstrip("/")
    cache = tmp_path / "cache"
    async with edge(cache, upstream, 1) as (_, url):
        assert await fetch(url + signed("big.m4s")) == (200, data)
        await until(lambda: indexed(cache) == ["demo/big.m4s"])
    summary = tmp_path / "strace.txt"
    wrap = (strace, "-f", "-c", "-e", "trace=sendfile", "-o", str(summary))
    async with edge(cache, upstream, 1, wrap) as (_proc, url):
        for _ in range(3):
            assert await fetch(url + signed("big.m4s")) == (200, data)
        status, part = await fetch(url + signed("big.m4s"), {"Range": "bytes=1000-"})
        assert (status, sha(part)) == (206, sha(data[1000:]))
    assert origin.count("/v/demo/big.m4s") == 1, "the traced run must have served hits only"
    text = summary.read_text()
    m = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?sendfile$", text, re.M)
    assert m and int(m.group(1)) >= 4, text


async def test_a_leader_killed_mid_fill_never_blocks_its_key(  # type: ignore[no-untyped-def]
        aiohttp_server, tmp_path: Path) -> None:
    """Two workers; the one leading a slow fill is killed with SIGKILL while clients on both
    workers wait. Every later request gets the whole object, right bytes, promptly; waiters
    either get the right bytes or a cut connection, never wrong bytes or a hang; SIGTERM
    then stops the group even while the parent is pausing before the restart."""
    data = os.urandom(4 * MiB)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/slow.m4s"] = Script(data, pieces=40, delay=0.05)
    up = await aiohttp_server(origin.app)
    cache = tmp_path / "cache"
    async with edge(cache, str(up.make_url("")).rstrip("/"), 2) as (proc, url):
        workers = descendants(proc.pid)
        assert len(workers) == 2
        first = asyncio.ensure_future(fetch(url + signed("slow.m4s")))
        await until(lambda: writer_of(workers, cache / "tmp") is not None)
        leader = writer_of(workers, cache / "tmp")
        assert leader is not None
        waiters = [asyncio.ensure_future(fetch(url + signed("slow.m4s"))) for _ in range(8)]
        await asyncio.sleep(0.3)  # they are connected and following the leader
        os.kill(leader, signal.SIGKILL)
        for w in [first, *waiters]:
            try:
                status, body = await asyncio.wait_for(w, 60)
            except aiohttp.ClientError:
                continue  # a cut connection: allowed, a short or wrong body is not
            assert status == 200 and sha(body) == sha(data)
        origin.scripts["/v/demo/slow.m4s"] = Script(data)
        started = time.monotonic()
        after = await asyncio.wait_for(
            asyncio.gather(*(fetch(url + signed("slow.m4s")) for _ in range(8))), 45)
        assert {(s, sha(b)) for s, b in after} == {(200, sha(data))}
        assert time.monotonic() - started < 30
        # The parent restarted the killed worker (perhaps after its pause) and still stops
        # the whole group on SIGTERM.
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


async def test_a_purge_is_seen_by_every_worker(aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Both workers hold a small object (in RAM, answered by the fast path); after a purge
    of the title in the shared store, no connection on any worker gets the old bytes."""
    old, new = os.urandom(16 * 1024), os.urandom(16 * 1024)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/s.m4s"] = Script(old, headers={"Cache-Control": "max-age=3600"})
    up = await aiohttp_server(origin.app)
    cache = tmp_path / "cache"
    async with edge(cache, str(up.make_url("")).rstrip("/"), 2) as (_proc, url):
        assert await fetch(url + signed("s.m4s")) == (200, old)
        await until(lambda: indexed(cache) == ["demo/s.m4s"])
        # Many connections, one after another: SO_REUSEPORT puts some on each worker, and
        # each worker answers hits from RAM. (A request that joins a fill still streaming
        # in another worker's process may get that fill's bytes; docs/edge.md says so.)
        before = [await fetch(url + signed("s.m4s")) for _ in range(24)]
        assert {(s, sha(b)) for s, b in before} == {(200, sha(old))}
        assert origin.count("/v/demo/s.m4s") == 1
        origin.scripts["/v/demo/s.m4s"] = Script(new, headers={"Cache-Control": "max-age=3600"})
        store = CacheStore(cache, 256 * MiB)
        try:
            assert store.purge(title=TITLE) == 1
        finally:
            store.close()
        after = []
        for _ in range(24):  # one after another, so none joins another's fill
            after.append(await fetch(url + signed("s.m4s")))
        assert {(s, sha(b)) for s, b in after} == {(200, sha(new))}


async def test_a_client_that_hangs_up_does_not_cancel_the_fill(  # type: ignore[no-untyped-def]
        aiohttp_server, tmp_path: Path) -> None:
    """The first viewer closes its connection a little way into a slow miss: the fill goes
    on to the end, and the next viewer gets a hit (no second upstream fetch)."""
    data = os.urandom(2 * MiB)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/gone.m4s"] = Script(data, pieces=20, delay=0.05,
                                                headers={"Cache-Control": "max-age=3600"})
    up = await aiohttp_server(origin.app)
    async with edge(tmp_path / "cache", str(up.make_url("")).rstrip("/"), 1) as (_, url):
        host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {signed('gone.m4s')} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = 0
        while got < 256 * 1024:
            chunk = await asyncio.wait_for(reader.read(65536), 30)
            assert chunk
            got += len(chunk)
        writer.transport.abort()  # hang up hard (RST), mid-body
        assert "/v/demo/gone.m4s" not in origin.finished
        await until(lambda: "/v/demo/gone.m4s" in origin.finished, within=30)
        assert await fetch(url + signed("gone.m4s")) == (200, data)
        assert origin.count("/v/demo/gone.m4s") == 1


async def test_a_purge_right_after_a_burst_of_misses_is_seen_by_every_worker(  # type: ignore[no-untyped-def]
        aiohttp_server, tmp_path: Path) -> None:
    """16 concurrent misses on two workers (one leads the fill, the other follows it from
    disk), a purge the moment the last of them has its bytes: from then on every request,
    on either worker, gets the new bytes; none joins the fill that is over."""
    old, new = os.urandom(256 * 1024), os.urandom(256 * 1024)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/b.m4s"] = Script(
        old, headers={"Cache-Control": "max-age=3600"}, pieces=4, delay=0.05
    )
    up = await aiohttp_server(origin.app)
    cache = tmp_path / "cache"
    async with edge(cache, str(up.make_url("")).rstrip("/"), 2) as (_proc, url):
        for round_ in range(3):  # the burst lands on both workers in some round
            burst = await asyncio.gather(*(fetch(url + signed("b.m4s")) for _ in range(16)))
            assert {(s, sha(b)) for s, b in burst} == {(200, sha(old))}
            store = CacheStore(cache, 256 * MiB)
            try:
                store.purge(title=TITLE)
            finally:
                store.close()
            origin.scripts["/v/demo/b.m4s"] = Script(new, headers={"Cache-Control": "max-age=3600"})
            after = [await fetch(url + signed("b.m4s")) for _ in range(12)]
            got = {(s, sha(b)) for s, b in after}
            assert got == {(200, sha(new))}, (round_, (200, sha(old)) in got)
            old, new = new, os.urandom(256 * 1024)
            origin.scripts["/v/demo/b.m4s"] = Script(
                old, headers={"Cache-Control": "max-age=3600"}, pieces=4, delay=0.05
            )
            store = CacheStore(cache, 256 * MiB)
            try:
                store.purge(title=TITLE)
            finally:
                store.close()
            await asyncio.sleep(0.5)  # the next round starts from an empty cache


def _counter(text: str, name: str) -> float:
    """The sum of every sample of counter `name` in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_from_any_worker_count_every_worker(aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """30 requests on connections of their own (spread over two workers), then scrapes
    that land on either worker: every scrape counts all 30 and all bytes sent."""
    body = os.urandom(20_000)
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/m.m4s"] = Script(body, headers={"Cache-Control": "max-age=3600"})
    up = await aiohttp_server(origin.app)
    cache = tmp_path / "cache"
    async with edge(cache, str(up.make_url("")).rstrip("/"), 2) as (proc, url):
        assert await fetch(url + signed("m.m4s")) == (200, body)
        await until(lambda: indexed(cache) == ["demo/m.m4s"])
        for _ in range(29):
            assert await fetch(url + signed("m.m4s")) == (200, body)
        for _ in range(12):
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True)
            ) as s, s.get(url + "/metrics") as r:
                text = await r.text()
            assert _counter(text, "vcdn_edge_requests_total") == 30, text
            assert _counter(text, "vcdn_edge_sent_bytes_total") == 30 * len(body)
        assert len(descendants(proc.pid)) >= 2
