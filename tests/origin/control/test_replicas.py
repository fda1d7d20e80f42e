"""Two real `vcdn control` replicas on one PostgreSQL schema of the test's own.

Appliances heartbeat through clients that know both replicas; the replica holding the
jobs lock is killed with SIGKILL. What must hold: no heartbeat fails (the client's one
retry goes to the survivor), no appliance goes stale, both replicas gave identical fill
manifests, and the survivor takes the lock and plans the next epoch within a bound.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

from tests.origin.control.conftest import (
    OPERATOR,
    PACKAGER,
    control_replicas,
    manifest,
    registration,
)
from tests.origin.control.server import ControlProcess
from vcdn.control_client import ControlClient
from vcdn.schemas import Enrollment, Heartbeat, Registration, TitleManifest, decode

pytestmark = pytest.mark.slow

APPLIANCES: Final = ("a1", "a2", "a3", "a4")
INTERVAL: Final = 1.0  # the replicas' heartbeat interval; stale after 3 silent ones
TAKEOVER_BOUND: Final = 15.0  # lease_retry 0.5 s + PostgreSQL ending the dead session
CONFIG: Final = """
heartbeat_interval = 1.0
stale_after_beats = 3
down_after_beats = 30
heartbeat_flush_delay = 0.05
plan_interval = 1.0
lease_retry = 0.5
"""


async def until(check: Any, limit: float, what: str) -> Any:
    """Poll `check()` (async) until it returns something truthy."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {limit} s waiting for {what}")


async def get(session: aiohttp.ClientSession, url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Any:
    with control_replicas(postgres_url, tmp_path, CONFIG) as servers:
        yield servers


async def test_killing_the_lock_holder_loses_no_heartbeat_and_the_other_takes_over(
    replicas: list[ControlProcess],
) -> None:
    urls = [s.url for s in replicas]
    async with aiohttp.ClientSession() as http:
        packager = ControlClient(urls, PACKAGER)
        for i in range(4):
            data = manifest(f"t{i}", [4000, 4000])
            await packager.register_title(decode(TitleManifest, data))
        await packager.close()
        # Half the fleet asks replica 1 first, half replica 2: both carry beats.
        # Each appliance enrolled by the operator, with its own bound token.
        async with ControlClient(urls, OPERATOR) as operator:
            tokens = {a: (await operator.enroll(Enrollment(id=a, site="s1")))[1]
                      for a in APPLIANCES}
        fleet = {
            a: ControlClient(urls if k % 2 == 0 else urls[::-1], tokens[a], timeout=5.0)
            for k, a in enumerate(APPLIANCES)
        }
        for a, client in fleet.items():
            await client.register_appliance(decode(Registration, registration(a, capacity=20_000)))
        failures: list[str] = []
        beats = 0
        stop = asyncio.Event()
        quiet = asyncio.Event()  # beats without demand: the plans' inputs hold still

        async def beat(a: str, client: ControlClient) -> None:
            nonlocal beats
            while not stop.is_set():
                asked = {} if quiet.is_set() else {f"t{int(a[1]) % 4}": 3}
                hb = Heartbeat(state="healthy", title_requests=asked)
                try:
                    await client.heartbeat(a, hb)
                    beats += 1
                except Exception as exc:  # any lost beat fails the test below
                    failures.append(f"{a}: {exc}")
                await asyncio.sleep(INTERVAL / 2)

        tasks = [asyncio.create_task(beat(a, c)) for a, c in fleet.items()]
        try:

            async def leader() -> int | None:
                for i, u in enumerate(urls):
                    body = await get(http, f"{u}/healthz")
                    if body["jobs"]["leader"] and body["plan_epoch"] >= 1:
                        return i + 1
                return None

            holder = await until(leader, 20.0, "a replica to hold the jobs lock and plan") - 1
            # Identical manifests from either replica once every appliance has beaten
            # (a state change or a new epoch between two reads rightly replans).
            async def steady() -> bool:
                listed = await get(http, f"{urls[0]}/api/v1/appliances", OPERATOR)
                return all(a["state"] == "healthy" for a in listed["appliances"])

            await until(steady, 20.0, "every appliance to be healthy")
            # A manifest is a function of the database: read both while demand holds still
            # (new demand rightly replans at the next request, on either replica).
            quiet.set()
            await asyncio.sleep(0.5)  # beats already buffered reach the database
            for _attempt in range(20):
                epoch = (await get(http, f"{urls[0]}/healthz"))["plan_epoch"]
                bodies = [
                    [
                        await get(http, f"{u}/api/v1/appliances/{a}/fill-manifest", OPERATOR)
                        for a in APPLIANCES
                    ]
                    for u in urls
                ]
                if (await get(http, f"{urls[0]}/healthz"))["plan_epoch"] == epoch:
                    break
            assert bodies[0] == bodies[1]
            assert any(m["titles"] for m in bodies[0])  # something was planned at all
            quiet.clear()

            survivor = urls[1 - holder]
            killed_at = time.monotonic()
            replicas[holder].proc.kill()  # SIGKILL: no cleanup, its session just dies
            replicas[holder].proc.wait()

            async def took_over() -> bool:
                return bool((await get(http, f"{survivor}/healthz"))["jobs"]["leader"])

            await until(took_over, TAKEOVER_BOUND, "the survivor to take the jobs lock")
            took = time.monotonic() - killed_at
            epoch_now = (await get(http, f"{survivor}/healthz"))["plan_epoch"]

            async def planned() -> bool:
                return (await get(http, f"{survivor}/healthz"))["plan_epoch"] > epoch_now

            await until(planned, TAKEOVER_BOUND, "the survivor to plan a new epoch")
            before = beats
            await asyncio.sleep(4 * INTERVAL)  # longer than stale_after_beats × interval
            assert beats > before + 2 * len(APPLIANCES)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
            for client in fleet.values():
                await client.close()
        assert failures == [], failures[:5]
        listed = await get(http, f"{survivor}/api/v1/appliances", OPERATOR)
        states = {a["id"]: a["state"] for a in listed["appliances"]}
        assert states == dict.fromkeys(APPLIANCES, "healthy")
        for a in APPLIANCES:
            await get(http, f"{survivor}/api/v1/appliances/{a}/fill-manifest", OPERATOR)
        assert took < TAKEOVER_BOUND
