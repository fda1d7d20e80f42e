"""Helpers for appliance tests: tiny titles with a correct manifest.json, and the real
origin and control plane served in-process on loopback ports."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from appliance.daemon import Appliance
from appliance.settings import ApplianceSettings
from origin.content.app import make_app as make_origin_app
from origin.content.settings import OriginSettings
from origin.control.app import make_app as make_control_app
from origin.control.auth import Principal, hash_token
from origin.control.settings import ControlSettings
from origin.control.store import EnrollmentRecord, open_store
from vcdn.schemas import FileEntry, TitleManifest, encode
from vcdn.tokens import parse_keys, sign

OPERATOR = "operator-token-0123456789"
APPLIANCE_TOKEN = "appliance-a1-token-0123456789"  # bound to a1, enrolled by start_control
# What the operator approves for a1 by default: documentation and loopback ranges.
APPROVED = ["127.0.0.0/8", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24",
            "2001:db8::/32"]
PACKAGER = "packager-token-0123456789"
SIGNING_KEYS = "k1:signing-secret-0123456789"
ADMIN_TOKEN = "admin-operator-token-0123"




def make_title(root: Path, title: str, files: dict[str, bytes]) -> TitleManifest:
    """Write `files` under root/title and a manifest.json listing their sizes and sha256."""
    entries = []
    for path, data in files.items():
        target = root / title / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        entries.append(FileEntry(path, len(data), hashlib.sha256(data).hexdigest()))
    manifest = TitleManifest(
        title=title, duration=4.0, segment_seconds=2.0, format="ts", single_file=False,
        renditions=[], files=entries,
    )
    (root / title / "manifest.json").write_text(json.dumps(encode(manifest)))
    return manifest


def blob(n: int, seed: int = 0) -> bytes:
    """n pseudo-random bytes (incompressible, distinct per seed)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:n])


@dataclass
class Served:
    url: str
    runner: web.AppRunner
    port: int

    async def stop(self) -> None:
        await self.runner.cleanup()


async def serve_app(app: web.Application, port: int = 0,
                    ssl_context: ssl.SSLContext | None = None) -> Served:
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0][1]
    scheme = "https" if ssl_context is not None else "http"
    return Served(f"{scheme}://127.0.0.1:{bound}", runner, bound)


async def start_origin(root: Path, port: int = 0) -> Served:
    return await serve_app(make_origin_app(OriginSettings(root=root)), port)


async def start_control(db: Path, port: int = 0, interval: float = 0.3,
                        ssl_context: ssl.SSLContext | None = None, **extra: Any) -> Served:
    """The control plane with appliance a1 enrolled (site s1) and bound to APPLIANCE_TOKEN."""
    settings = ControlSettings(
        db=f"sqlite:///{db}",
        tokens=f"operator:{OPERATOR},packager:{PACKAGER}",
        heartbeat_interval=interval,
        **extra,
    )
    store = await open_store(settings.db)
    try:
        if await store.get_enrollment("a1") is None:
            now = time.time()
            await store.put_enrollment(EnrollmentRecord("a1", "s1", APPROVED, "", now, now))
            await store.add_token(hash_token(APPLIANCE_TOKEN), Principal("appliance", "a1"),
                                  "tests", now)
    finally:
        await store.close()
    return await serve_app(make_control_app(settings), port, ssl_context)


async def enroll(control_url: str, appliance: str, site: str = "s1",
                 prefixes: list[str] | None = None) -> str:
    """Enrol an appliance through the operator API; its bound token."""
    body = {"id": appliance, "site": site, "prefixes": APPROVED if prefixes is None else prefixes}
    return str((await api(control_url, "POST", "/enrollments", OPERATOR, body))["token"])


async def api(url: str, method: str, path: str, token: str = OPERATOR, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s, s.request(
        method, url + "/api/v1" + path, json=body, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        assert resp.status < 300, (resp.status, await resp.text())
        return await resp.json()


async def publish(control_url: str, manifest: TitleManifest) -> None:
    await api(control_url, "POST", "/titles", PACKAGER, encode(manifest))


async def make_popular(control_url: str, titles: dict[str, int], site: str = "elsewhere") -> None:
    """A ghost appliance in another site reports requests, so titles get a global score."""
    ghost = f"ghost-{site}"
    reg = {"id": ghost, "site": site, "public_url": "http://192.0.2.1:9", "capacity_bytes": 1}
    listing = await api(control_url, "GET", "/enrollments")
    if ghost not in {e["id"] for e in listing["enrollments"]}:
        token = await enroll(control_url, ghost, site)
    else:
        token = (await api(control_url, "POST", f"/enrollments/{ghost}/token"))["token"]
    await api(control_url, "POST", "/appliances", token, reg)
    beat = {"state": "unhealthy", "title_requests": titles}
    await api(control_url, "PUT", f"/appliances/{ghost}/heartbeat", token, beat)


def appliance_toml(
    path: Path,
    *,
    id: str,
    site: str,
    port: int,
    admin_port: int,
    cache_dir: Path,
    control_url: str,
    origin_url: str,
    **extra: Any,
) -> Path:
    """A settings file as an operator would write it (secrets included, as the file allows)."""
    values: dict[str, Any] = {
        "id": id, "site": site, "public_url": f"http://127.0.0.1:{port}",
        "host": "127.0.0.1", "port": port, "admin_port": admin_port,
        "cache_dir": str(cache_dir), "cache_capacity": "64MiB", "cache_free_floor": "0",
        "control_url": control_url, "origin_url": origin_url,
        "control_token": APPLIANCE_TOKEN, "operator_token": ADMIN_TOKEN,
        "signing_keys": SIGNING_KEYS, "fill_window": "always", "heartbeat_interval": 0.3,
        "fill_interval": 0.5, "upstream_timeout": 2.0, "drain_timeout": 2.0,
    }
    values.update(extra)
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        elif isinstance(value, list | tuple):
            lines.append(f"{key} = {json.dumps(list(value))}")
        else:
            lines.append(f"{key} = {json.dumps(str(value))}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
async def origin_root(tmp_path: Path) -> Path:
    root = tmp_path / "origin"
    root.mkdir()
    return root


@pytest.fixture
async def origin(origin_root: Path) -> AsyncIterator[Served]:
    served = await start_origin(origin_root)
    yield served
    await served.stop()


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[Served]:
    served = await start_control(tmp_path / "control.db")
    yield served
    await served.stop()



@dataclass
class Running:
    appliance: Appliance
    task: asyncio.Task[None]
    urls: dict[str, str]

    async def stop(self) -> None:
        self.appliance.stop()
        await asyncio.wait_for(self.task, 10)


async def run_appliance(settings: ApplianceSettings) -> Running:
    """An appliance served in this process until `stop()`."""
    appliance = Appliance(settings)
    ready: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(appliance.serve(ready.set_result))
    waiting: set[asyncio.Future[Any]] = {task, ready}
    done, _ = await asyncio.wait(waiting, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
    return Running(appliance, task, ready.result())


async def until(check: Callable[[], Any], within: float = 10.0, every: float = 0.05) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail after `within` s."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(every)


def signed(title: str, keys: str = SIGNING_KEYS) -> str:
    parsed = parse_keys(keys)
    kid, key = next(iter(parsed.items()))
    return sign(title, key_id=kid, key=key, expires=int(time.time()) + 600)


ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Proc:
    """An appliance (or other vcdn service) in its own process; logs go to `log_path`."""

    process: asyncio.subprocess.Process
    log_path: Path
    line: str

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for raw in self.log_path.read_text().splitlines():
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if rec.get("event") == name:
                out.append(rec)
        return out

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)

    async def terminate(self, within: float = 10.0) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), within)


async def start_proc(args: list[str], log_path: Path, env: dict[str, str] | None = None,
                     ready: str = "listening on", within: float = 15.0) -> Proc:
    """Run `python -m vcdn.cli ARGS` from the repository root; wait for its ready line."""
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "ab") as log:  # noqa: ASYNC230 - a local log file, opened once
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vcdn.cli", *args, cwd=ROOT, env=full_env,
            stdout=asyncio.subprocess.PIPE, stderr=log,
        )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(within):
            while True:
                raw = await process.stdout.readline()
                if not raw:
                    tail = log_path.read_text()[-2000:]  # noqa: ASYNC240
                    raise AssertionError(f"{args[0]} exited: {tail}")
                line = raw.decode()
                if ready in line:
                    return Proc(process, log_path, line.strip())
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
