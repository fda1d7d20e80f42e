"""The control API serves the planner's manifests and predictions (SQLite store, real
HTTP through the aiohttp test client)."""

from __future__ import annotations

from typing import Any

import pytest

from origin.control.app import make_app
from origin.control.settings import ControlSettings
from tests.origin.control.conftest import BOOTSTRAP, Api, FakeClock, manifest, registration
from vcdn.hashing import rank

SITE = ["a1", "a2", "a3"]


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Any) -> Api:
    settings = ControlSettings(db=f"sqlite:///{tmp_path}/control.db", tokens=BOOTSTRAP)
    clock = FakeClock()
    client = await aiohttp_client(make_app(settings, clock=clock))
    return Api(client, clock, settings)


async def setup_site(api: Api, titles: dict[str, dict[str, Any]]) -> None:
    for body in titles.values():
        status, _ = await api.call("POST", "/api/v1/titles", "packager", json=body)
        assert status in (200, 201)
    for a in SITE:
        await api.call("POST", "/api/v1/appliances", json=registration(a, capacity=100_000))
    for a in SITE:
        status, _ = await api.call(
            "PUT", f"/api/v1/appliances/{a}/heartbeat", a,  # each with its own bound token
            json={"state": "healthy", "title_requests": {f"t{i}": 10 * (i + 1) for i in range(6)}},
        )
        assert status == 200


def catalog() -> dict[str, dict[str, Any]]:
    titles = {f"t{i}": manifest(f"t{i}", [5000, 5000]) for i in range(6)}
    premiere = manifest("premiere", [4000])
    premiere["release_at"] = "2027-01-15T20:00:00Z"  # 12 h after the fake clock's start
    titles["premiere"] = premiere
    return titles


async def test_each_title_is_planned_on_its_top_ranked_appliances(api: Api) -> None:
    await setup_site(api, catalog())
    holders: dict[str, list[str]] = {}
    for a in SITE:
        status, fill = await api.call("GET", f"/api/v1/appliances/{a}/fill-manifest", "operator")
        assert status == 200
        for t in fill["titles"]:
            holders.setdefault(t["title"], []).append(a)
    assert set(holders) == {*(f"t{i}" for i in range(6)), "premiere"}
    for title, boxes in holders.items():
        ranked = rank(title, SITE)
        assert sorted(boxes, key=ranked.index) == ranked[: len(boxes)]
        assert len(boxes) < len(SITE)  # a site partitions its titles, it does not mirror


async def test_asking_again_gives_the_same_manifest(api: Api) -> None:
    await setup_site(api, catalog())
    _, first = await api.call("GET", "/api/v1/appliances/a1/fill-manifest", "operator")
    _, second = await api.call("GET", "/api/v1/appliances/a1/fill-manifest", "operator")
    assert [t["title"] for t in first["titles"]] == [t["title"] for t in second["titles"]]


async def test_predicted_demand_lists_the_premiere_before_it_opens(api: Api) -> None:
    await setup_site(api, catalog())
    status, body = await api.call("GET", "/api/v1/popularity/predicted?site=s1")
    assert status == 200
    scores = {p["title"]: p["score"] for p in body["predicted"]}
    assert scores["premiere"] > 0 and scores["t5"] > scores["t0"]
    assert body["site"] == "s1"
    assert (await api.call("GET", "/api/v1/popularity/predicted"))[0] == 400  # site required
    assert (await api.call("GET", "/api/v1/popularity/predicted?site=s1", "a1"))[0] == 403
