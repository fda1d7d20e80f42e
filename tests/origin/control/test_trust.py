"""Issue 11, control-plane findings as attacks: one appliance speaking for another (1),
claiming other people's clients (6), and flooding the control with heartbeats (5).
Each ran successfully on the code before enrolment; each is refused now."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import replace
from typing import Any

import pytest

from origin.control.auth import Principal, hash_token, parse_bootstrap
from origin.control.http_common import BEATS, STORE, TOKEN_CACHE_SECONDS, TOKENS, TokenCache
from origin.control.settings import ControlSettings
from origin.control.store import open_store
from tests.origin.control.conftest import Api, enroll, manifest, registration
from vcdn.errors import ConfigError

NET_A = ["198.51.100.0/24"]


async def reg(api: Api, who: str, id_: str, **extra: Any) -> tuple[int, Any]:
    return await api.call("POST", "/api/v1/appliances", who, json=registration(id_, **extra))


async def steering_view(api: Api) -> dict[str, dict[str, Any]]:
    _, body = await api.call("GET", "/api/v1/appliances", "steering")
    return {a["id"]: a for a in body["appliances"]}


def test_an_unbound_bootstrap_appliance_token_does_not_start() -> None:
    with pytest.raises(ConfigError, match="appliance@ID:token"):
        parse_bootstrap("appliance:appliance-token-0123456789")
    with pytest.raises(ConfigError, match="Only appliance tokens"):
        parse_bootstrap("operator@a1:operator-token-0123456789")


async def test_an_unbound_appliance_token_in_the_database_is_refused_and_logged(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    # A token made before binding was required: role appliance, no subject.
    old = "vcdn_old-unbound-appliance-token"
    store = await open_store(api.settings.db)
    try:
        await store.add_token(hash_token(old), Principal("appliance"), "legacy", time.time())
    finally:
        await store.close()
    await enroll(api, "a2", prefixes=NET_A)
    await reg(api, "operator", "a2", prefixes=NET_A)
    with caplog.at_level(logging.WARNING, logger="vcdn.control"):
        for method, path, body in [
            ("POST", "/api/v1/appliances", registration("a2", public_url="http://evil.test")),
            ("PUT", "/api/v1/appliances/a2/heartbeat", {"state": "healthy"}),
            ("GET", "/api/v1/appliances/a2/fill-manifest", None),
            ("POST", "/api/v1/appliances", registration("new-one")),
        ]:
            status, answer = await api.call(method, path, old, json=body)
            assert status == 403 and "bound to no appliance" in answer["detail"], (path, answer)
    assert "unbound_appliance_token" in caplog.text
    assert (await steering_view(api))["a2"]["public_url"] == "http://a2.example.test:8080"


async def test_one_appliance_cannot_speak_for_another(api: Api) -> None:
    """Finding 1: a1's credential re-registered a2, beat for it, read its manifest."""
    t1 = await enroll(api, "a1")
    await enroll(api, "a2", prefixes=NET_A)
    assert (await reg(api, t1, "a1"))[0] == 201
    assert (await reg(api, "operator", "a2", prefixes=NET_A))[0] == 201
    status, answer = await reg(api, t1, "a2", public_url="http://203.0.113.66:80", prefixes=NET_A)
    assert status == 403 and "belongs to appliance 'a1'" in answer["detail"]
    status, _ = await api.call("PUT", "/api/v1/appliances/a2/heartbeat", t1,
                               json={"state": "draining"})
    assert status == 403
    assert (await api.call("GET", "/api/v1/appliances/a2/fill-manifest", t1))[0] == 403
    assert (await reg(api, t1, "a9"))[0] == 403  # no new appliances either
    assert (await api.call("POST", "/api/v1/enrollments", t1,
                           json={"id": "a9", "site": "s1"}))[0] == 403
    view = await steering_view(api)
    assert set(view) == {"a1", "a2"} and view["a2"]["public_url"] == "http://a2.example.test:8080"


async def test_registration_needs_an_enrolment_and_keeps_the_operators_site_and_url(
    api: Api,
) -> None:
    # A bound token alone (here a bootstrap one) does not admit an appliance.
    status, answer = await reg(api, "a3", "a3")
    assert status == 403 and "not enrolled" in answer["detail"]
    token = await enroll(api, "a3", site="s1")
    assert (await reg(api, token, "a3"))[0] == 201
    status, answer = await reg(api, token, "a3", site="s2")
    assert status == 403 and "only an operator" in answer["detail"]
    status, answer = await reg(api, token, "a3", public_url="http://elsewhere.test:80")
    assert status == 403 and "needs the operator role" in answer["detail"]
    assert (await reg(api, token, "a3", capacity=5))[0] == 200  # its own other fields: fine
    # The operator moves it; the appliance may then register where the operator put it.
    assert (await reg(api, "operator", "a3", public_url="http://elsewhere.test:80"))[0] == 200
    assert (await reg(api, token, "a3", public_url="http://elsewhere.test:80"))[0] == 200
    status, _ = await api.call("PUT", "/api/v1/enrollments/a3", json={"id": "a3", "site": "s2"})
    assert status == 200 and (await steering_view(api))["a3"]["site"] == "s2"
    assert (await reg(api, token, "a3", site="s2", public_url="http://elsewhere.test:80"))[0] == 200
    # Enrolling twice is a conflict, not a silent second token.
    status, answer = await api.call("POST", "/api/v1/enrollments", json={"id": "a3", "site": "s1"})
    assert status == 409


async def test_a_decommissioned_appliance_cannot_come_back_with_its_old_token(api: Api) -> None:
    token = await enroll(api, "a1")
    assert (await reg(api, token, "a1"))[0] == 201
    beat = ("PUT", "/api/v1/appliances/a1/heartbeat")
    assert (await api.call(*beat, token, json={"state": "healthy"}))[0] == 200  # now cached
    status, body = await api.call("DELETE", "/api/v1/appliances/a1")
    assert (status, body) == (200, {"deleted": "a1", "revoked": 1})
    # The retired box (or whoever holds its token) neither beats nor registers again.
    assert (await api.call(*beat, token, json={"state": "healthy"}))[0] == 401
    assert (await reg(api, token, "a1"))[0] == 401
    _, listing = await api.call("GET", "/api/v1/appliances")
    assert listing["appliances"] == []
    # The operator brings it back on purpose with a new token; the enrolment is kept.
    status, rotated = await api.call("POST", "/api/v1/enrollments/a1/token")
    assert status == 201 and rotated["revoked"] == 0
    assert (await reg(api, rotated["token"], "a1"))[0] == 201


async def test_a_cached_token_costs_no_query_until_a_token_is_revoked_anywhere(api: Api) -> None:
    """Appliances beat every 10 s: a decision kept for one second saved nothing. The
    decision stays until the store's token epoch moves; a revocation made elsewhere (the
    CLI, another replica: here a second store on the same database) still takes effect
    at the next check, TOKEN_CACHE_SECONDS at most after it."""
    token = await enroll(api, "a1")
    assert (await reg(api, token, "a1"))[0] == 201
    app = api.client.app
    store, cache = app[STORE], app[TOKENS]
    looked_up: list[str] = []
    real = store.principal

    async def counted(digest: str) -> Principal | None:
        looked_up.append(digest)
        return await real(digest)

    store.principal = counted  # type: ignore[method-assign]
    cache.clear()  # registering cached it already
    beat = ("PUT", "/api/v1/appliances/a1/heartbeat")
    assert (await api.call(*beat, token, json={"state": "healthy"}))[0] == 200
    await asyncio.sleep(TOKEN_CACHE_SECONDS + 0.1)  # the epoch is read again, unchanged
    assert (await api.call(*beat, token, json={"state": "healthy"}))[0] == 200
    assert looked_up == [hash_token(token)]
    elsewhere = await open_store(api.settings.db)
    try:
        assert await elsewhere.revoke_subject("a1") == 1
    finally:
        await elsewhere.close()
    cache.checked = float("-inf")
    assert (await api.call(*beat, token, json={"state": "healthy"}))[0] == 401


async def test_a_revocation_elsewhere_is_seen_within_the_check_interval(api: Api) -> None:
    token = await enroll(api, "a1")
    assert (await reg(api, token, "a1"))[0] == 201
    beat = ("PUT", "/api/v1/appliances/a1/heartbeat")
    assert (await api.call(*beat, token, json={"state": "healthy"}))[0] == 200  # now cached
    elsewhere = await open_store(api.settings.db)
    try:
        await elsewhere.revoke_subject("a1")
    finally:
        await elsewhere.close()
    revoked = time.monotonic()
    while (await api.call(*beat, token, json={"state": "healthy"}))[0] == 200:
        assert time.monotonic() - revoked < 2.0, "a revoked token still works after 2 s"
        await asyncio.sleep(0.05)


def test_a_lookup_overtaken_by_a_revocation_is_not_cached() -> None:
    """A token query that began before this server cleared its cache (a revocation) may
    carry the revoked answer: it must not be kept past the clear."""
    cache = TokenCache()
    before = cache.generation
    cache.clear()  # the revocation lands while the lookup is in flight
    cache.put("ab" * 32, Principal("appliance", "a1"), before)
    assert cache.get("ab" * 32) is None
    cache.put("ab" * 32, Principal("appliance", "a1"), cache.generation)
    assert cache.get("ab" * 32) == Principal("appliance", "a1")


async def test_rotation_and_revocation_take_effect_at_once(api: Api) -> None:
    old = await enroll(api, "a1")
    assert (await reg(api, old, "a1"))[0] == 201
    beat = ("PUT", "/api/v1/appliances/a1/heartbeat")
    assert (await api.call(*beat, old, json={"state": "healthy"}))[0] == 200  # now cached
    status, rotated = await api.call("POST", "/api/v1/enrollments/a1/token")
    assert status == 201 and rotated["revoked"] == 1
    assert (await api.call(*beat, old, json={"state": "healthy"}))[0] == 401
    new = rotated["token"]
    assert (await api.call(*beat, new, json={"state": "healthy"}))[0] == 200
    status, revoked = await api.call("DELETE", "/api/v1/enrollments/a1/token")
    assert status == 200 and revoked == {"appliance": "a1", "revoked": 1}
    assert (await api.call(*beat, new, json={"state": "healthy"}))[0] == 401
    # Only the operator manages enrolments.
    assert (await api.call("POST", "/api/v1/enrollments/a1/token", "a1"))[0] == 403
    assert (await api.call("GET", "/api/v1/enrollments", "steering"))[0] == 403


@pytest.mark.parametrize(
    ("prefix", "why"),
    [
        ("0.0.0.0/0", "default route"),
        ("::/0", "default route"),
        ("10.0.0.0/7", "wider than /8"),
        ("2001:db8::/18", "wider than /19"),
    ],
)
async def test_default_routes_and_wide_prefixes_are_400_saying_why(
    api: Api, prefix: str, why: str
) -> None:
    """Finding 6: a bound token registered 0.0.0.0/0 and ::/0 and took every client."""
    token = await enroll(api, "a1", prefixes=["10.0.0.0/8"])
    status, answer = await reg(api, token, "a1", prefixes=[prefix])
    assert status == 400 and why in answer["detail"], answer
    # Nobody may approve one either, nor register one as the operator.
    status, answer = await api.call("POST", "/api/v1/enrollments",
                                    json={"id": "b1", "site": "s2", "prefixes": [prefix]})
    assert status == 400 and why in answer["detail"]
    assert (await reg(api, "operator", "a1", prefixes=[prefix]))[0] == 400


async def test_an_appliance_cannot_take_another_sites_clients_with_a_longer_prefix(
    api: Api,
) -> None:
    """Finding 6: a more specific prefix inside b1's took b1's clients (longest match)."""
    ta = await enroll(api, "a1", site="s1", prefixes=["192.0.2.0/24"])
    tb = await enroll(api, "b1", site="s2", prefixes=["198.51.100.0/24"])
    assert (await reg(api, tb, "b1", site="s2", prefixes=["198.51.100.0/24"]))[0] == 201
    status, answer = await reg(api, ta, "a1", prefixes=["192.0.2.0/24", "198.51.100.128/25"])
    assert status == 403 and "outside the prefixes approved" in answer["detail"]
    assert "a1" not in await steering_view(api)
    assert (await reg(api, ta, "a1", prefixes=["192.0.2.0/25"]))[0] == 201
    # The operator narrows a1's approval: its registration shrinks with it at once.
    status, _ = await api.call("PUT", "/api/v1/enrollments/a1",
                               json={"id": "a1", "site": "s1", "prefixes": ["192.0.2.128/25"]})
    assert status == 200
    assert (await steering_view(api))["a1"]["prefixes"] == []
    _, listing = await api.call("GET", "/api/v1/enrollments")
    assert {e["id"]: e["prefixes"] for e in listing["enrollments"]} == {
        "a1": ["192.0.2.128/25"], "b1": ["198.51.100.0/24"]}
    # An appliance reads its own approval (to filter what BGP teaches it), not others'.
    assert (await api.call("GET", "/api/v1/enrollments/a1", ta))[1]["prefixes"] == [
        "192.0.2.128/25"]
    assert (await api.call("GET", "/api/v1/enrollments/b1", ta))[0] == 403


# --- finding 5: heartbeat floods ---

HISTORY_ROWS = 5


@pytest.fixture
def settings(settings: ControlSettings) -> ControlSettings:
    """The default request-body limit (8 MiB), under which the floods below were accepted."""
    return replace(settings, history_rows=HISTORY_ROWS, max_body=8 * 1024 * 1024)


async def beating(api: Api, id_: str = "a1") -> None:
    await enroll(api, id_)
    assert (await reg(api, id_, id_))[0] == 201


async def test_an_8_mb_heartbeat_of_made_up_titles_is_413(api: Api) -> None:
    await beating(api)
    titles = {f"made-up-title-{i:06d}": 1 for i in range(280_000)}
    body = json.dumps({"state": "healthy", "title_requests": titles})
    assert 7_000_000 < len(body) < api.settings.max_body  # what the general limit let in
    status, answer = await api.call("PUT", "/api/v1/appliances/a1/heartbeat", "a1", data=body)
    assert status == 413 and "limit" in answer["detail"]
    _, scores = await api.call("GET", "/api/v1/popularity")
    assert scores["scores"] == []


async def test_counts_only_for_catalog_titles_and_within_bounds(api: Api) -> None:
    await api.call("POST", "/api/v1/titles", "packager", json=manifest("real", [1]))
    await beating(api)
    beat = "/api/v1/appliances/a1/heartbeat"
    made_up = {f"x{i:05d}": 3 for i in range(9_999)}
    status, _ = await api.call("PUT", beat, "a1",
                               json={"state": "healthy", "title_requests": {**made_up, "real": 2}})
    assert status == 200
    _, scores = await api.call("GET", "/api/v1/popularity")
    assert [(s["title"], s["score"]) for s in scores["scores"]] == [("real", 2.0)]
    too_many = {f"x{i:05d}": 1 for i in range(10_001)}
    status, answer = await api.call("PUT", beat, "a1",
                                    json={"state": "healthy", "title_requests": too_many})
    assert status == 400 and "at most 10000" in answer["detail"]
    for count in (10**12, -1, 1.5, True):
        body = {"state": "healthy", "title_requests": {"real": count}}
        status, answer = await api.call("PUT", beat, "a1", json=body)
        assert status == 400 and "heartbeat_max_count" in answer["detail"], count
    _, scores = await api.call("GET", "/api/v1/popularity")
    assert [(s["title"], s["score"]) for s in scores["scores"]] == [("real", 2.0)]


async def test_flapping_beats_with_huge_details_keep_a_bounded_history(api: Api) -> None:
    """Finding 5: state-flapping beats with megabytes of `checks` detail grew the history
    by 28 MB in four calls; now each row is cut and each appliance keeps HISTORY_ROWS."""
    await beating(api)
    detail = "d" * 900_000
    for i in range(12):
        state = "healthy" if i % 2 else "draining"
        body = {"state": state, "checks": {"disk": {"ok": False, "detail": detail}},
                "title_requests": {f"t{j:04d}": j for j in range(500)}}
        status, _ = await api.call("PUT", "/api/v1/appliances/a1/heartbeat", "a1", json=body)
        assert status == 200
        api.clock.advance(1.0)
    status, history = await api.call("GET", "/api/v1/appliances/a1/heartbeats?limit=1000")
    rows = history["heartbeats"]
    assert status == 200 and len(rows) == HISTORY_ROWS
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    assert rows[-1]["at"] == api.clock() - 1.0  # the newest are kept
    for r in rows:
        assert len(r["heartbeat"]["checks"]["disk"]["detail"]) == 256
        assert len(r["heartbeat"]["title_requests"]) == 100
        assert len(json.dumps(r["heartbeat"])) < 4096
    status, _ = await api.call(
        "PUT", "/api/v1/appliances/a1/heartbeat", "a1",
        json={"state": "healthy", "checks": {"disk": {"ok": False, "detail": "d" * 2_000_000}}})
    assert status == 413


async def test_a_10000_title_beat_holds_the_event_loop_for_a_few_ms_at_most(api: Api) -> None:
    """The parse, check and popularity work of a big beat runs off the event loop: the
    loop thread's own CPU time between two of its turns stays small (wall-clock gaps
    also include waiting for the interpreter lock and, on a shared machine, the CPU)."""
    await beating(api)
    body = json.dumps({"state": "healthy",
                       "title_requests": {f"title-{i:05d}": i + 1 for i in range(10_000)}})
    holds: list[float] = []
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0)
            c, w = time.thread_time(), time.perf_counter()
            holds.append(c - cpu)
            gaps.append(w - wall)
            cpu, wall = c, w

    for _ in range(3):
        task = asyncio.create_task(ticker())
        status, _ = await api.call("PUT", "/api/v1/appliances/a1/heartbeat", "a1", data=body)
        await api.client.app[BEATS].flush()
        done.set()
        await task
        done.clear()
        assert status == 200
    print(f"10,000-title beat: loop CPU hold max {max(holds) * 1000:.2f} ms, "
          f"wall gap max {max(gaps) * 1000:.1f} ms")
    assert max(holds) < 0.010
