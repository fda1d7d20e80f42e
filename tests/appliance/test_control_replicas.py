"""A real appliance given two control replicas (PostgreSQL): one is SIGKILLed, the
appliance's heartbeats and fill manifests carry on through the other, no beat fails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from appliance import settings as settings_mod
from onebox.procs import free_port
from tests.appliance.conftest import (
    OPERATOR,
    Served,
    api,
    appliance_toml,
    blob,
    make_popular,
    make_title,
    publish,
    run_appliance,
    until,
)
from tests.origin.control.conftest import (  # postgres_url: the checked fixture, shared
    control_replicas,
    postgres_url,  # noqa: F401
)
from tests.origin.control.server import ControlProcess

pytestmark = pytest.mark.slow
CONFIG: Final = "heartbeat_interval = 0.5\nstale_after_beats = 4\nlease_retry = 0.5\n"


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Iterator[list[ControlProcess]]:  # noqa: F811
    with control_replicas(postgres_url, tmp_path, CONFIG) as servers:
        yield servers


def sample(app: object, name: str, **labels: str) -> float:
    return app.edge.registry.get_sample_value(name, labels) or 0.0  # type: ignore[attr-defined]


async def test_an_appliance_fails_over_to_the_surviving_replica(
    tmp_path: Path, origin: Served, origin_root: Path, replicas: list[ControlProcess]
) -> None:
    first, second = (r.url for r in replicas)
    await publish(first, make_title(origin_root, "keep", {"s.ts": blob(20_000, 3)}))
    await make_popular(second, {"keep": 2})
    # a1 is enrolled (its bootstrap token, APPLIANCE_TOKEN, is bound to it).
    await api(first, "POST", "/enrollments", OPERATOR, {"id": "a1", "site": "s1"})
    path = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=free_port(), admin_port=free_port(),
        cache_dir=tmp_path / "cache", control_url=f"{first},{second}", origin_url=origin.url,
    )
    running = await run_appliance(settings_mod.load(path, env={}))
    app = running.appliance
    try:
        await until(lambda: app.status.fill.titles_complete == 1 and app.status.control_ok,
                    within=30.0)
        replicas[0].proc.kill()  # SIGKILL the replica the appliance asks first
        replicas[0].proc.wait()
        killed = time.time()
        await until(lambda: (app.status.last_heartbeat or 0) > killed + 1.0, within=15.0)
        manifests = app.status.fill.manifest_at or 0
        await until(lambda: (app.status.fill.manifest_at or 0) > manifests, within=15.0)
        assert sample(app, "vcdn_appliance_heartbeats_total", result="error") == 0
        listed = await api(second, "GET", "/appliances", OPERATOR)
        states = {a["id"]: a["state"] for a in listed["appliances"]}
        assert states["a1"] == "healthy"
    finally:
        await running.stop()
        await asyncio.sleep(0)
