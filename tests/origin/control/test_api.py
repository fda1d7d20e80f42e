"""The control API over HTTP, against each store (see `db_url` in conftest)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from origin.control.migrations import LATEST
from tests.origin.control.conftest import (
    HALF_LIFE,
    INTERVAL,
    MAX_BODY,
    PACKAGER,
    Api,
    enroll,
    manifest,
    registration,
)


async def test_healthz_names_the_store_and_its_schema_version(api: Api) -> None:
    status, body = await api.call("GET", "/healthz", who=None)
    assert status == 200
    assert body["status"] == "ok"
    assert body["store"] in ("sqlite", "postgres")
    assert body["schema_version"] == LATEST


async def test_title_is_created_then_replaced_and_listed(api: Api) -> None:
    status, body = await api.call(
        "POST", "/api/v1/titles", "packager", json=manifest("t1", [10, 20])
    )
    assert (status, body["created"], body["total_bytes"]) == (201, True, 30)
    status, body = await api.call("POST", "/api/v1/titles", "packager", json=manifest("t1", [5]))
    assert (status, body["created"], body["files"]) == (200, False, 1)
    status, body = await api.call("GET", "/api/v1/titles", "steering")
    assert status == 200
    [summary] = body["titles"]
    assert summary["title"] == "t1" and summary["total_bytes"] == 5 and summary["files"] == 1
    status, body = await api.call("GET", "/api/v1/titles/t1", "a1")
    assert status == 200
    assert body["files"] == manifest("t1", [5])["files"]
    assert body["popularity"] == 0.0


async def test_packager_registration_call_shape_is_accepted(api: Api) -> None:
    """`vcdn package --control URL` POSTs the manifest with its bearer token: 201, then 200."""
    from packager.register import register_title
    from vcdn.schemas import TitleManifest, decode

    m = decode(TitleManifest, manifest("from-packager", [100, 200, 300]))
    url = str(api.client.make_url("/"))
    assert await register_title(url, m, PACKAGER) == 201
    assert await register_title(url, m, PACKAGER) == 200
    status, body = await api.call("GET", "/api/v1/titles/from-packager")
    assert status == 200 and len(body["files"]) == 3


async def test_unknown_title_is_404_and_malformed_id_is_400(api: Api) -> None:
    status, body = await api.call("GET", "/api/v1/titles/nope")
    assert status == 404 and body["error"] == "not_found" and "nope" in body["detail"]
    status, body = await api.call("GET", "/api/v1/titles/..%2Fetc")
    assert status in (400, 404) and body["error"] in ("bad_request", "not_found")
    status, body = await api.call("GET", "/api/v1/titles/%20bad")
    assert status == 400 and body["error"] == "bad_request"


@pytest.mark.parametrize(
    ("method", "path", "who", "status"),
    [
        ("POST", "/api/v1/titles", None, 401),
        ("POST", "/api/v1/titles", "wrong-token-0123456789", 401),
        ("POST", "/api/v1/titles", "steering", 403),
        ("POST", "/api/v1/titles", "a1", 403),
        ("GET", "/api/v1/titles", None, 401),
        ("POST", "/api/v1/appliances", "packager", 403),
        ("PUT", "/api/v1/appliances/a1/heartbeat", "operator", 403),
        ("PUT", "/api/v1/appliances/a2/heartbeat", "a1", 403),
        ("GET", "/api/v1/appliances", "packager", 403),
        ("GET", "/api/v1/appliances/a2/fill-manifest", "a1", 403),
        ("GET", "/api/v1/appliances/a1/heartbeats", "steering", 403),
        ("GET", "/api/v1/popularity", "a1", 403),
    ],
)
async def test_requests_without_a_valid_token_or_role_are_refused(
    api: Api, method: str, path: str, who: str | None, status: int
) -> None:
    got, body = await api.call(method, path, who, json={})
    assert got == status
    assert body["error"] == ("unauthorized" if status == 401 else "forbidden")
    assert body["detail"]


async def test_401_says_how_to_authenticate(api: Api) -> None:
    resp = await api.client.post("/api/v1/titles", json={}, headers={"Authorization": "Basic x"})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_token_created_in_the_store_authenticates_until_then_unknown(api: Api) -> None:
    from origin.control.auth import Principal, hash_token
    from origin.control.http_common import STORE

    token = "stored-steering-token-0123456789"
    assert (await api.call("GET", "/api/v1/appliances", token))[0] == 401
    store = api.client.app[STORE]
    await store.add_token(hash_token(token), Principal("steering"), "test", api.clock())
    assert (await api.call("GET", "/api/v1/appliances", token))[0] == 200
    assert (await api.call("POST", "/api/v1/titles", token, json=manifest("x", [1])))[0] == 403


def _deep(n: int) -> str:
    return "[" * n + "]" * n


BAD_TITLES: list[tuple[str, Any]] = [
    ("not json", b"{nope"),
    ("not utf-8", b"\xff\xfe{}"),
    ("empty body", b""),
    ("a list, not an object", [1, 2]),
    ("deep nesting", _deep(100_000).encode()),
    ("huge integer", b'{"title": ' + b"9" * 5000 + b"}"),
    ("missing field", {k: v for k, v in manifest("t", [1]).items() if k != "files"}),
    ("unknown field", manifest("t", [1]) | {"colour": "red"}),
    ("wrong type", manifest("t", [1]) | {"duration": "long"}),
    ("bool for int", manifest("t", [1]) | {"version": True}),
    ("NaN", json.dumps(manifest("t", [1]) | {"duration": float("nan")}).encode()),
    ("bad title id", manifest("../etc", [1])),
    (
        "path escapes",
        manifest("t", [1]) | {"files": [{"path": "../x", "size": 1, "sha256": "0" * 64}]},
    ),
    (
        "absolute path",
        manifest("t", [1]) | {"files": [{"path": "/x", "size": 1, "sha256": "0" * 64}]},
    ),
    ("bad sha256", manifest("t", [1]) | {"files": [{"path": "x", "size": 1, "sha256": "xyz"}]}),
    (
        "negative size",
        manifest("t", [1]) | {"files": [{"path": "x", "size": -1, "sha256": "0" * 64}]},
    ),
    ("bad format", manifest("t", [1]) | {"format": "avi"}),
    ("NUL in a string", manifest("t", [1]) | {"created_at": "a\u0000b"}),
    ("lone surrogate", json.dumps(manifest("t", [1]) | {"created_at": "\ud800"}).encode()),
]


@pytest.mark.parametrize(("case", "body"), BAD_TITLES, ids=[c for c, _ in BAD_TITLES])
async def test_bad_title_bodies_are_400_with_a_reason(api: Api, case: str, body: Any) -> None:
    if isinstance(body, bytes):
        status, answer = await api.call("POST", "/api/v1/titles", "packager", data=body)
    else:
        status, answer = await api.call("POST", "/api/v1/titles", "packager", json=body)
    assert status == 400, (case, answer)
    assert answer["error"] == "bad_request"
    assert isinstance(answer["detail"], str) and answer["detail"]
    assert (await api.call("GET", "/api/v1/titles"))[1]["titles"] == []


async def test_a_body_over_the_limit_is_413(api: Api) -> None:
    big = manifest("t", [1] * (MAX_BODY // 50))
    status, body = await api.call("POST", "/api/v1/titles", "packager", json=big)
    assert status == 413 and body["error"] == "payload_too_large"


BAD_REGISTRATIONS = [
    ("bad url", registration("a1") | {"public_url": "ftp://x"}),
    ("broken IPv6 url", registration("a1") | {"public_url": "http://[::1/x"}),
    ("url port out of range", registration("a1") | {"public_url": "http://h:99999/"}),
    ("bad prefix", registration("a1") | {"prefixes": ["10.0.0.0/99"]}),
    ("lat out of range", registration("a1") | {"lat": 91.0}),
    ("negative capacity", registration("a1", capacity=-1)),
    ("bad id", registration("a 1")),
    ("missing site", {k: v for k, v in registration("a1").items() if k != "site"}),
]


@pytest.mark.parametrize(("case", "body"), BAD_REGISTRATIONS, ids=[c for c, _ in BAD_REGISTRATIONS])
async def test_bad_registrations_are_400(api: Api, case: str, body: Any) -> None:
    status, answer = await api.call("POST", "/api/v1/appliances", "a1", json=body)
    assert status == 400 and answer["error"] == "bad_request", (case, answer)


async def test_registration_is_idempotent_and_updates(api: Api) -> None:
    await enroll(api, "a1")
    status, view = await api.call("POST", "/api/v1/appliances", "a1", json=registration("a1"))
    assert status == 201 and view["state"] == "down" and view["last_heartbeat"] is None
    status, view = await api.call(
        "POST", "/api/v1/appliances", "a1", json=registration("a1", asn=64500)
    )
    assert status == 200 and view["site"] == "s1" and view["asn"] == 64500
    status, body = await api.call("GET", "/api/v1/appliances", "steering")
    assert [a["id"] for a in body["appliances"]] == ["a1"]
    assert body["heartbeat_interval"] == INTERVAL
    assert body["generated_at"] == api.clock()
    # A bound appliance token cannot register another appliance.
    status, _ = await api.call("POST", "/api/v1/appliances", "a1", json=registration("a2"))
    assert status == 403


async def _state(api: Api, appliance: str) -> str:
    _, body = await api.call("GET", "/api/v1/appliances", "steering")
    return {a["id"]: a["state"] for a in body["appliances"]}[appliance]


async def test_appliance_state_follows_heartbeats_and_silence(api: Api) -> None:
    await api.call("POST", "/api/v1/appliances", "operator", json=registration("a1"))
    assert await _state(api, "a1") == "down"  # registered, never beat
    status, ack = await api.call(
        "PUT",
        "/api/v1/appliances/a1/heartbeat",
        "a1",
        json={"state": "healthy", "free_bytes": 7, "load": {"requests_per_s": 3.5}},
    )
    assert status == 200 and ack == {"state": "healthy", "heartbeat_interval": INTERVAL}
    _, body = await api.call("GET", "/api/v1/appliances", "steering")
    [view] = body["appliances"]
    assert view["state"] == "healthy" and view["free_bytes"] == 7
    assert view["load"]["requests_per_s"] == 3.5 and view["last_heartbeat"] == api.clock()
    api.clock.advance(3 * INTERVAL - 0.1)
    assert await _state(api, "a1") == "healthy"
    api.clock.advance(0.2)  # three beats missed
    assert await _state(api, "a1") == "stale"
    status, ack = await api.call(
        "PUT", "/api/v1/appliances/a1/heartbeat", "a1", json={"state": "draining"}
    )
    assert ack["state"] == "draining" and await _state(api, "a1") == "draining"
    await api.call("PUT", "/api/v1/appliances/a1/heartbeat", "a1", json={"state": "unhealthy"})
    assert await _state(api, "a1") == "down"
    await api.call("PUT", "/api/v1/appliances/a1/heartbeat", "a1", json={"state": "healthy"})
    assert await _state(api, "a1") == "healthy"
    api.clock.advance(10 * INTERVAL + 0.1)  # long gone
    assert await _state(api, "a1") == "down"


async def test_heartbeat_for_an_unknown_appliance_is_404(api: Api) -> None:
    status, body = await api.call(
        "PUT", "/api/v1/appliances/ghost/heartbeat", "ghost", json={"state": "healthy"}
    )
    assert status == 404 and "POST /api/v1/appliances" in body["detail"]


@pytest.mark.parametrize(
    "beat",
    [
        {"state": "sleepy"},
        {"state": "healthy", "hit_ratio": 1.5},
        {"state": "healthy", "title_requests": {"t1": -1}},
        {"state": "healthy", "title_requests": {"../x": 1}},
        {"state": "healthy", "load": {"connections": "many"}},
        {"state": "healthy", "extra": 1},
        {},
    ],
)
async def test_bad_heartbeats_are_400(api: Api, beat: dict[str, Any]) -> None:
    await api.call("POST", "/api/v1/appliances", json=registration("a1"))
    status, body = await api.call("PUT", "/api/v1/appliances/a1/heartbeat", "a1", json=beat)
    assert status == 400 and body["error"] == "bad_request"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/appliances/a1/heartbeats?sice=5",
        "/api/v1/popularity?limit=5&x=1",
        "/api/v1/appliances/a%00b/fill-manifest",
        "/api/v1/titles/a%00b",
    ],
)
async def test_unknown_query_parameters_and_nul_in_ids_are_400(api: Api, path: str) -> None:
    await api.call("POST", "/api/v1/appliances", json=registration("a1"))
    status, body = await api.call("GET", path)
    assert status == 400 and body["error"] == "bad_request"


async def test_heartbeat_history_is_kept_in_order_and_filtered_by_since(api: Api) -> None:
    await api.call("POST", "/api/v1/appliances", json=registration("a1"))
    times = []
    for i in range(3):
        times.append(api.clock())
        await api.call(
            "PUT", "/api/v1/appliances/a1/heartbeat", "a1", json={"state": "healthy", "objects": i}
        )
        api.clock.advance(1.0)
    status, body = await api.call("GET", "/api/v1/appliances/a1/heartbeats")
    assert status == 200
    assert [h["at"] for h in body["heartbeats"]] == times
    assert [h["heartbeat"]["objects"] for h in body["heartbeats"]] == [0, 1, 2]
    _, body = await api.call("GET", f"/api/v1/appliances/a1/heartbeats?since={times[1]}&limit=1")
    assert [h["heartbeat"]["objects"] for h in body["heartbeats"]] == [1]
    for query in ("since=abc", "limit=0", "limit=x", "since=nan"):
        status, body = await api.call("GET", f"/api/v1/appliances/a1/heartbeats?{query}")
        assert status == 400, query
    assert (await api.call("GET", "/api/v1/appliances/zz/heartbeats"))[0] == 404


async def test_popularity_adds_per_site_and_halves_every_half_life(api: Api) -> None:
    for title in ("t1", "t2"):
        await api.call("POST", "/api/v1/titles", "packager", json=manifest(title, [1]))
    await api.call("POST", "/api/v1/appliances", json=registration("a1", site="s1"))
    await api.call("POST", "/api/v1/appliances", json=registration("a2", site="s1"))
    await api.call("POST", "/api/v1/appliances", json=registration("b1", site="s2"))
    beat = "/api/v1/appliances/{}/heartbeat"
    await api.call(
        "PUT",
        beat.format("a1"),
        json={"state": "healthy", "title_requests": {"t1": 6, "t2": 1}},
        who="a1",
    )
    await api.call(
        "PUT",
        beat.format("a2"),
        json={"state": "healthy", "title_requests": {"t1": 2}},
        who="a2",
    )
    await api.call(
        "PUT",
        beat.format("b1"),
        json={"state": "healthy", "title_requests": {"t2": 4}},
        who="b1",
    )
    _, body = await api.call("GET", "/api/v1/popularity?site=s1", "steering")
    assert [(s["title"], s["score"]) for s in body["scores"]] == [("t1", 8.0), ("t2", 1.0)]
    api.clock.advance(HALF_LIFE)
    _, body = await api.call("GET", "/api/v1/popularity")
    got = {(s["site"], s["title"]): s["score"] for s in body["scores"]}
    assert got == pytest.approx({("s1", "t1"): 4.0, ("s1", "t2"): 0.5, ("s2", "t2"): 2.0})
    # New requests add to the decayed score.
    await api.call(
        "PUT",
        beat.format("a1"),
        json={"state": "healthy", "title_requests": {"t1": 1}},
        who="a1",
    )
    _, body = await api.call("GET", "/api/v1/popularity?site=s1&limit=1")
    assert body["scores"] == [{"title": "t1", "site": "s1", "score": pytest.approx(5.0)}]
    assert (await api.call("GET", "/api/v1/popularity?site=..."))[0] == 400


async def test_fill_manifest_lists_popular_titles_that_fit_with_healthy_site_peers(
    api: Api,
) -> None:
    for title, sizes in {
        "hot": [3000],
        "warm": [2000, 2000],
        "cold": [1000],
        "huge": [50_000],
    }.items():
        await api.call("POST", "/api/v1/titles", "packager", json=manifest(title, sizes))
    await api.call("POST", "/api/v1/appliances", json=registration("a1", capacity=10_000))
    await api.call("POST", "/api/v1/appliances", json=registration("a2"))
    await api.call("POST", "/api/v1/appliances", json=registration("a3"))
    await api.call("POST", "/api/v1/appliances", json=registration("b1", site="s2"))
    for who in ("a2", "a3", "b1"):
        await api.call(
            "PUT", f"/api/v1/appliances/{who}/heartbeat", who, json={"state": "healthy"}
        )
    await api.call(
        "PUT", "/api/v1/appliances/a3/heartbeat", "a3", json={"state": "draining"}
    )
    counts = {"hot": 50, "warm": 30, "huge": 100}  # "cold" has no demand
    await api.call(
        "PUT",
        "/api/v1/appliances/a1/heartbeat",
        "a1",
        json={"state": "healthy", "title_requests": counts},
    )
    status, fill = await api.call("GET", "/api/v1/appliances/a1/fill-manifest", "a1")
    assert status == 200
    assert fill["appliance"] == "a1" and fill["capacity_bytes"] == 10_000
    # "huge" is the most popular but cannot fit in 90% of 10,000 bytes; "cold" is never asked for.
    assert [t["title"] for t in fill["titles"]] == ["hot", "warm"]
    hot = fill["titles"][0]
    assert hot["bytes"] == 3000 and hot["files"][0]["size"] == 3000
    # Only healthy peers of the same site: not a3 (draining), not b1 (other site).
    assert hot["peers"] == ["http://a2.example.test:8080"]
    assert (await api.call("GET", "/api/v1/appliances/a2/fill-manifest", "operator"))[0] == 200
    assert (await api.call("GET", "/api/v1/appliances/zz/fill-manifest", "operator"))[0] == 404


async def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    status, body = await api.call("GET", "/api/v1/nothing-here")
    assert status == 404 and body["error"] == "not_found"
    resp = await api.client.delete("/api/v1/titles")
    assert resp.status == 405 and "POST" in resp.headers["Allow"]
    assert (await resp.json())["error"] == "method_not_allowed"


async def test_metrics_count_requests_by_route_and_stored_heartbeats(api: Api) -> None:
    await api.call("GET", "/api/v1/titles")
    await api.call("POST", "/api/v1/appliances", json=registration("a1"))
    await api.call("PUT", "/api/v1/appliances/a1/heartbeat", "a1", json={"state": "healthy"})
    await api.call("GET", "/api/v1/appliances")  # flushes the beat
    resp = await api.client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200
    line = 'vcdn_control_requests_total{method="GET",route="/api/v1/titles",status="200"} 1.0'
    assert line in text
    assert "vcdn_control_heartbeats_stored_total 1.0" in text
    assert "vcdn_control_heartbeats_dropped_total 0.0" in text


async def test_openapi_document_is_valid_openapi_3(api: Api) -> None:
    from openapi_spec_validator import validate

    status, doc = await api.call("GET", "/api/v1/openapi.json", who=None)
    assert status == 200
    validate(doc)
    served = {
        (r.method, r.resource.canonical)
        for r in api.client.app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == served


async def test_a_failed_database_is_503_with_retry_after_not_500(api: Api) -> None:
    from origin.control.http_common import STORE

    await api.call("POST", "/api/v1/appliances", json=registration("a1"))
    await api.client.app[STORE].close()
    resp = await api.client.get("/api/v1/titles", headers=api.headers("operator"))
    assert resp.status == 503 and resp.headers["Retry-After"] == "5"
    body = await resp.json()
    assert body["error"] == "unavailable" and body["detail"]
    # A heartbeat is answered (it is stored behind), the read that must see it is not.
    status, _ = await api.call(
        "PUT", "/api/v1/appliances/a1/heartbeat", "a1", json={"state": "healthy"}
    )
    assert status == 200
    assert (await api.call("GET", "/api/v1/appliances"))[0] == 503


async def test_an_appliance_registered_elsewhere_can_beat_here(api: Api) -> None:
    """Another server on the same database (or this one before a restart) registered it."""
    from origin.control.http_common import STORE
    from vcdn.schemas import Registration, decode

    await api.client.app[STORE].put_appliance(decode(Registration, registration("a1")), 0.0)
    status, ack = await api.call(
        "PUT", "/api/v1/appliances/a1/heartbeat", "a1", json={"state": "healthy"}
    )
    assert status == 200 and ack["state"] == "healthy"
    assert await _state(api, "a1") == "healthy"


async def test_heartbeat_check_details_with_odd_characters_are_kept_verbatim(api: Api) -> None:
    await api.call("POST", "/api/v1/appliances", json=registration("a1"))
    raw = (
        b'{"state": "healthy", "checks": '
        b'{"disk": {"ok": false, "detail": "a\\u0000b \\ud800 \xc3\xa9"}}}'
    )
    status, _ = await api.call("PUT", "/api/v1/appliances/a1/heartbeat", "a1", data=raw)
    assert status == 200
    _, body = await api.call("GET", "/api/v1/appliances/a1/heartbeats")
    [beat] = body["heartbeats"]
    assert beat["heartbeat"]["checks"]["disk"]["detail"] == "a\x00b \ud800 é"


async def test_an_operator_decommissions_an_appliance_and_its_beats_then_get_404(api: Api) -> None:
    await api.call("POST", "/api/v1/appliances", json=registration("a1"))
    await api.call("PUT", "/api/v1/appliances/a1/heartbeat", "a1", json={"state": "healthy"})
    assert (await api.call("DELETE", "/api/v1/appliances/a1", "a1"))[0] == 403
    status, body = await api.call("DELETE", "/api/v1/appliances/a1")
    assert (status, body) == (200, {"deleted": "a1", "revoked": 0})  # a bootstrap token
    _, listing = await api.call("GET", "/api/v1/appliances")
    assert listing["appliances"] == []
    status, _ = await api.call(
        "PUT", "/api/v1/appliances/a1/heartbeat", "a1", json={"state": "healthy"}
    )
    assert status == 404  # the daemon registers again on 404
    assert (await api.call("DELETE", "/api/v1/appliances/a1"))[0] == 404


async def test_a_title_replaced_at_the_same_instant_changes_the_fill_manifest(api: Api) -> None:
    await api.call("POST", "/api/v1/titles", "packager", json=manifest("t1", [100]))
    await api.call("POST", "/api/v1/appliances", json=registration("a1", capacity=10_000))
    await api.call(
        "PUT",
        "/api/v1/appliances/a1/heartbeat",
        "a1",
        json={"state": "healthy", "title_requests": {"t1": 1}},
    )
    _, fill = await api.call("GET", "/api/v1/appliances/a1/fill-manifest")
    assert fill["titles"][0]["bytes"] == 100
    await api.call("POST", "/api/v1/titles", "packager", json=manifest("t1", [200]))  # same clock
    _, fill = await api.call("GET", "/api/v1/appliances/a1/fill-manifest")
    assert fill["titles"][0]["bytes"] == 200


async def test_appliance_list_pages_in_id_order_with_a_stable_cursor(api: Api) -> None:
    ids = ["a-7", "a1", "a10", "a2", "b.0", "b_1", "z9"]
    for i in reversed(ids):
        status, _ = await api.call("POST", "/api/v1/appliances", json=registration(i))
        assert status == 201
    status, whole = await api.call("GET", "/api/v1/appliances", "steering")
    assert status == 200 and "next" not in whole  # the unpaged form is unchanged
    order = [a["id"] for a in whole["appliances"]]
    assert sorted(order) == sorted(ids)
    seen: list[str] = []
    path = "/api/v1/appliances?limit=3"
    for _ in range(5):
        status, page = await api.call("GET", path, "steering")
        assert status == 200 and len(page["appliances"]) <= 3
        assert page["heartbeat_interval"] == INTERVAL
        seen += [a["id"] for a in page["appliances"]]
        if page["next"] is None:
            break
        assert page["next"] == seen[-1]
        path = f"/api/v1/appliances?limit=3&after={page['next']}"
    assert seen == order  # every appliance once, in the unpaged order
    # A cursor names a position, not a row: a deleted appliance does not break the walk.
    assert (await api.call("DELETE", "/api/v1/appliances/a10"))[0] == 200
    status, page = await api.call("GET", "/api/v1/appliances?limit=2&after=a10", "steering")
    assert [a["id"] for a in page["appliances"]] == order[order.index("a10") + 1 :][:2]
    status, page = await api.call("GET", f"/api/v1/appliances?limit=9&after={order[-1]}")
    assert status == 200 and page == {**page, "appliances": [], "next": None}


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("limit=0", "between 1 and 5000"),
        ("limit=5001", "between 1 and 5000"),
        ("limit=ten", "must be an integer"),
        ("limit=2&after=a%00b", "Query parameter 'after'"),
        ("limit=2&after=", "Query parameter 'after'"),
        ("limit=2&cursor=a1", "Unknown query parameter"),
    ],
)
async def test_bad_appliance_pages_are_400(api: Api, query: str, says: str) -> None:
    status, body = await api.call("GET", f"/api/v1/appliances?{query}", "steering")
    assert status == 400 and says in body["detail"], body
