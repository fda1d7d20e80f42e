"""Fixtures of the control-plane tests: one API suite, run against SQLite and PostgreSQL.

PostgreSQL is the real server on 127.0.0.1:5432 (``VCDN_TEST_POSTGRES`` overrides the
URL). Each test gets a schema of its own, dropped afterwards. When PostgreSQL cannot be
reached the postgres half fails in CI and is skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from origin.control.app import make_app
from origin.control.settings import ControlSettings
from tests.conftest import IN_CI
from tests.origin.control.server import ControlProcess, start_control

DEFAULT_PG: Final = "postgresql://postgres@127.0.0.1:5432/test"

OPERATOR: Final = "operator-token-0123456789"
BOUND_A1: Final = "appliance-a1-token-0123456789"
APPLIANCE: Final = BOUND_A1  # every appliance token is bound to one appliance
PACKAGER: Final = "packager-token-0123456789"
STEERING: Final = "steering-token-0123456789"
# Bound bootstrap tokens of the appliances the tests use; `who="a2"` sends a2's token.
APPLIANCE_IDS: Final = ("a1", "a2", "a3", "b1", "ghost")
BOUND: Final = {a: f"appliance-{a}-token-0123456789" for a in APPLIANCE_IDS}
BOOTSTRAP: Final = (
    f"operator:{OPERATOR},packager:{PACKAGER},steering:{STEERING},"
    + ",".join(f"appliance@{a}:{t}" for a, t in BOUND.items())
)
TOKENS: Final = {
    "operator": OPERATOR,
    "packager": PACKAGER,
    "steering": STEERING,
    **BOUND,
}
INTERVAL: Final = 2.0
HALF_LIFE: Final = 100.0
MAX_BODY: Final = 256 * 1024
START: Final = 1_800_000_000.0


def postgres_base() -> str:
    return os.environ.get("VCDN_TEST_POSTGRES") or DEFAULT_PG


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test PostgreSQL URL, once checked to answer."""
    url = postgres_base()

    async def probe() -> None:
        conn = await asyncpg.connect(url, timeout=5)
        await conn.close()

    try:
        # A thread of its own: this fixture may first be asked for inside a running loop.
        _in_thread(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        message = f"PostgreSQL at {url} is unreachable ({exc}); set VCDN_TEST_POSTGRES."
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return url


async def fresh_schema(base: str) -> tuple[str, str]:
    """Create a schema of our own; (its name, a URL whose search_path selects it)."""
    name = f"vcdn_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
    finally:
        await conn.close()
    return name, with_query(base, search_path=name)


async def drop_schema(base: str, name: str) -> None:
    conn = await asyncpg.connect(base)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


def _in_thread(coro: Any) -> Any:
    """Run a coroutine to completion from sync code that may sit inside a running loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """One schema for this test run, dropped at its end; tests empty it between them."""
    name, url = _in_thread(fresh_schema(postgres_url))
    try:
        yield url
    finally:
        _in_thread(drop_schema(postgres_url, name))


async def empty_tables(url: str) -> None:
    """Remove every row but the migration record (cheaper than a schema per test)."""
    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT to_regclass('titles')") is not None:
            # DELETE, not TRUNCATE: for a few rows it takes no exclusive locks and is faster.
            await conn.execute(
                "DELETE FROM titles; DELETE FROM appliances; DELETE FROM heartbeats; "
                "DELETE FROM popularity; DELETE FROM tokens; DELETE FROM fill_plans; "
                "DELETE FROM enrollments; DELETE FROM title_keys"
            )
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[str]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/control.db"
        return
    url = request.getfixturevalue("postgres_schema_url")
    await empty_tables(url)
    yield url


class FakeClock:
    """Injectable time: tests move it instead of sleeping."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(db_url: str) -> ControlSettings:
    return ControlSettings(
        db=db_url,
        tokens=BOOTSTRAP,
        heartbeat_interval=INTERVAL,
        stale_after_beats=3,
        down_after_beats=10,
        popularity_half_life=HALF_LIFE,
        max_body=MAX_BODY,
        heartbeat_history_every=0,
    )


@dataclass
class Api:
    """A test client that sends each request as one of the bootstrap roles."""

    client: TestClient
    clock: FakeClock
    settings: ControlSettings

    def headers(self, who: str | None) -> dict[str, str]:
        return {} if who is None else {"Authorization": f"Bearer {TOKENS.get(who, who)}"}

    async def call(
        self,
        method: str,
        path: str,
        who: str | None = "operator",
        json: Any = None,
        data: bytes | str | None = None,
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"headers": self.headers(who)}
        if json is not None:
            kwargs["json"] = json
        if data is not None:
            kwargs["data"] = data
        resp = await self.client.request(method, path, **kwargs)
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


@pytest.fixture
async def api(aiohttp_client: Any, settings: ControlSettings, clock: FakeClock) -> Api:
    client = await aiohttp_client(make_app(settings, clock=clock))
    return Api(client, clock, settings)


def manifest(title: str, sizes: list[int], *, renditions: int = 1) -> dict[str, Any]:
    """A title manifest as the packager writes it (JSON)."""
    files = [
        {"path": f"720p/seg_{i:05d}.m4s", "size": size, "sha256": f"{i:064x}"}
        for i, size in enumerate(sizes)
    ]
    return {
        "title": title,
        "duration": 4.0 * len(sizes),
        "segment_seconds": 4.0,
        "format": "fmp4",
        "single_file": False,
        "renditions": [
            {
                "name": f"r{i}",
                "width": 1280,
                "height": 720,
                "bandwidth": 3_000_000,
                "average_bandwidth": 2_500_000,
                "codecs": "avc1.64001f,mp4a.40.2",
                "frame_rate": 25.0,
                "playlist": f"r{i}/index.m3u8",
            }
            for i in range(renditions)
        ],
        "files": files,
        "version": 1,
        "created_at": "2026-11-21T20:00:00Z",
    }


async def enroll(api: Api, id_: str, site: str = "s1", prefixes: list[str] | None = None) -> str:
    """Enrol an appliance as the operator does; its new bound token."""
    body = {"id": id_, "site": site, "prefixes": prefixes or []}
    status, answer = await api.call("POST", "/api/v1/enrollments", json=body)
    assert status == 201, answer
    return str(answer["token"])


def registration(
    id_: str, site: str = "s1", capacity: int = 10_000, **extra: Any
) -> dict[str, Any]:
    return {
        "id": id_,
        "site": site,
        "public_url": f"http://{id_}.example.test:8080",
        "capacity_bytes": capacity,
        **extra,
    }


__all__ = ["Api", "FakeClock", "enroll", "manifest", "registration", "replace"]


@contextmanager
def control_replicas(
    base: str, tmp_path: Path, config: str, count: int = 2
) -> Iterator[list[ControlProcess]]:
    """`count` real `vcdn control` processes on one fresh schema; stopped and dropped after."""
    name, url = _in_thread(fresh_schema(base))
    (tmp_path / "control.toml").write_text(config)
    servers: list[ControlProcess] = []
    try:
        for i in range(1, count + 1):
            home = tmp_path / f"control{i}"
            home.mkdir()
            servers.append(
                start_control(url, BOOTSTRAP, home, "--config", str(tmp_path / "control.toml"))
            )
        yield servers
    finally:
        for s in servers:
            if s.proc.poll() is None:
                s.stop()
            elif not s.log.closed:
                s.log.close()
        _in_thread(drop_schema(base, name))
