"""Both stores directly: migrations, persistence, atomic popularity under concurrency."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from origin.control.migrations import LATEST
from origin.control.store import (
    Beat,
    Store,
    heartbeat_json,
    latest_per_appliance,
    open_store,
    popularity_deltas,
)
from tests.origin.control.conftest import manifest, registration
from vcdn.errors import ConfigError, StoreError
from vcdn.schemas import Heartbeat, Registration, TitleManifest, decode


async def test_migrations_run_once_and_data_survives_a_reopen(db_url: str) -> None:
    store = await open_store(db_url)
    try:
        assert await store.schema_version() == LATEST
        assert await store.put_title(decode(TitleManifest, manifest("t1", [5])), 1.0) is True
    finally:
        await store.close()
    store = await open_store(db_url)
    try:
        assert await store.schema_version() == LATEST
        assert [s.title for s in await store.list_titles()] == ["t1"]
        assert await store.catalog_stamp() == (1, 1.0)
    finally:
        await store.close()


def _beat(appliance: str, at: float, counts: dict[str, int]) -> Beat:
    hb = Heartbeat(state="healthy", title_requests=counts)
    return Beat(appliance, at, hb, heartbeat_json(hb))


async def _titles(store: Store, *names: str) -> None:
    """Popularity counts only titles of the catalog."""
    for name in names:
        await store.put_title(decode(TitleManifest, manifest(name, [1])), 0.0)


async def test_heartbeat_batches_add_up_exactly_even_when_concurrent(db_url: str) -> None:
    store = await open_store(db_url)
    try:
        await _titles(store, "t", "u")
        for i in range(5):
            await store.put_appliance(decode(Registration, registration(f"a{i}")), 0.0)
        batches = [
            [_beat(f"a{(i + j) % 5}", 10.0, {"t": 1, "u": 2}) for j in range(5)] for i in range(10)
        ]
        stored = await asyncio.gather(*(store.record_heartbeats(b, 3600.0) for b in batches))
        assert stored == [5] * 10
        got = {s.title: s.score for s in await store.scores("s1")}
        assert got == {"t": pytest.approx(50.0), "u": pytest.approx(100.0)}
        assert len(await store.heartbeats("a0", 0.0, 1000)) == 10
        assert await store.record_heartbeats([_beat("nobody", 10.0, {"t": 1})], 3600.0) == 0
        assert await store.record_heartbeats([], 3600.0) == 0
        # The latest beat of an appliance in a batch is the one its row keeps.
        await store.record_heartbeats([_beat("a0", 11.0, {}), _beat("a0", 12.0, {})], 3600.0)
        assert (await store.get_appliance("a0")).last_heartbeat == 12.0  # type: ignore[union-attr]
        assert await store.prune_heartbeats(11.0) == 50
        assert [h.at for h in await store.heartbeats("a0", 0.0, 1000)] == [11.0, 12.0]
    finally:
        await store.close()


async def test_an_unusable_sqlite_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreError, match="SQLite database"):
        await open_store(f"sqlite:///{tmp_path}/file/control.db")


@pytest.mark.parametrize("url", ["mysql://x", "sqlite:///", "sqlite:relative", ""])
async def test_unsupported_database_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        await open_store(url)


def test_a_batch_writes_each_popularity_row_once_in_key_order() -> None:
    beats = [
        _beat("a1", 10.0, {"t": 4, "u": 1}),
        _beat("a2", 20.0, {"t": 2}),
        _beat("x", 20.0, {"t": 9}),
    ]
    sites = {"a1": "s1", "a2": "s1"}  # "x" is unknown: ignored
    deltas = popularity_deltas(beats, sites, half_life=10.0)
    assert [(t, s) for t, s, _, _ in deltas] == [("t", "s1"), ("u", "s1")]
    (_, _, t_score, t_at), (_, _, u_score, u_at) = deltas
    assert (t_score, t_at) == (pytest.approx(4 / 2 + 2), 20.0)  # 4 decayed one half-life, plus 2
    assert (u_score, u_at) == (1.0, 10.0)
    latest = latest_per_appliance([beats[1], beats[0], _beat("a1", 5.0, {})])
    assert [(b.appliance, b.at) for b in latest] == [("a1", 10.0), ("a2", 20.0)]


async def test_title_totals_sum_sites_and_decay_in_the_database(db_url: str) -> None:
    store = await open_store(db_url)
    try:
        await _titles(store, "t", "u")
        await store.put_appliance(decode(Registration, registration("a1", site="s1")), 0.0)
        await store.put_appliance(decode(Registration, registration("b1", site="s2")), 0.0)
        await store.record_heartbeats(
            [_beat("a1", 100.0, {"t": 8, "u": 2}), _beat("b1", 100.0, {"t": 4})], 10.0
        )
        assert await store.title_totals(100.0, 10.0) == {
            "t": pytest.approx(12.0),
            "u": pytest.approx(2.0),
        }
        assert await store.title_totals(110.0, 10.0, "t") == {"t": pytest.approx(6.0)}
        assert await store.title_totals(110.0, 10.0, "nope") == {}
    finally:
        await store.close()


async def test_tokens_are_stored_listed_and_deleted_by_hash(db_url: str) -> None:
    from origin.control.auth import Principal

    store = await open_store(db_url)
    try:
        await store.add_token("ab" * 32, Principal("appliance", "a1"), "box", 5.0)
        await store.add_token("cd" * 32, Principal("steering"), "", 6.0)
        assert await store.principal("ab" * 32) == Principal("appliance", "a1")
        assert [(t.hash[:2], t.role, t.subject, t.label) for t in await store.list_tokens()] == [
            ("ab", "appliance", "a1", "box"),
            ("cd", "steering", None, ""),
        ]
        assert await store.delete_token("ab" * 32) is True
        assert await store.delete_token("ab" * 32) is False
        assert await store.principal("ab" * 32) is None
    finally:
        await store.close()


async def test_every_token_revocation_advances_the_epoch_whoever_makes_it(db_url: str) -> None:
    """Servers cache token decisions until `token_epoch` moves: a deletion or change of a
    token row by any path (the store, the CLI, plain SQL) must advance it; a new token
    need not (unknown tokens are never cached)."""
    from origin.control.auth import Principal

    store = await open_store(db_url)
    try:
        start = await store.token_epoch()
        await store.add_token("ab" * 32, Principal("appliance", "a1"), "box", 5.0)
        await store.add_token("ac" * 32, Principal("appliance", "a1"), "box", 5.0)
        await store.add_token("cd" * 32, Principal("steering"), "", 6.0)
        assert await store.token_epoch() == start
        assert await store.delete_token("cd" * 32) is True
        after_delete = await store.token_epoch()
        assert after_delete > start
        assert await store.revoke_subject("a1") == 2  # triggers do not change the count
        after_revoke = await store.token_epoch()
        assert after_revoke > after_delete
        await store.add_token("ef" * 32, Principal("operator"), "", 7.0)
        assert await store.token_epoch() == after_revoke
    finally:
        await store.close()
    # Plain SQL, as an administrator or another tool would revoke.
    if db_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        try:
            with conn:
                conn.execute("UPDATE tokens SET subject = 'a9'")
                updated = conn.execute("SELECT epoch FROM token_epoch").fetchone()[0]
                conn.execute("DELETE FROM tokens")
                deleted = conn.execute("SELECT epoch FROM token_epoch").fetchone()[0]
        finally:
            conn.close()
    else:
        import asyncpg

        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute("UPDATE tokens SET label = 'x'")
            updated = await conn.fetchval("SELECT epoch FROM token_epoch")
            await conn.execute("DELETE FROM tokens")
            deleted = await conn.fetchval("SELECT epoch FROM token_epoch")
        finally:
            await conn.close()
    assert after_revoke < updated < deleted


def test_the_direct_appliance_json_equals_the_generic_encoding() -> None:
    from origin.control.store import ApplianceRecord
    from vcdn.schemas import Load, encode

    reg = decode(Registration, registration("a1", prefixes=["10.0.0.0/8"], asn=7))
    record = ApplianceRecord.registered(reg, 1.0)._replace(
        last_heartbeat=2.0,
        reported_state="draining",
        requests_per_s=1.5,
        bytes_per_s=2.5,
        connections=3,
        free_bytes=4,
        used_bytes=5,
        bytes_served=6,
        hit_ratio=0.5,
    )
    assert record.registration == reg and record.load == Load(1.5, 2.5, 3)
    for state in ("healthy", "stale", "draining", "down"):
        assert record.view_json(state) == encode(record.view(state))


async def test_a_beat_without_history_text_updates_state_but_adds_no_history_row(
    db_url: str,
) -> None:
    store = await open_store(db_url)
    try:
        await _titles(store, "t")
        await store.put_appliance(decode(Registration, registration("a1")), 0.0)
        hb = Heartbeat(state="draining", title_requests={"t": 2})
        assert await store.record_heartbeats([Beat("a1", 5.0, hb, None)], 3600.0) == 1
        record = await store.get_appliance("a1")
        assert record is not None and record.reported_state == "draining"
        assert await store.heartbeats("a1", 0.0, 10) == []
        assert {s.title: s.score for s in await store.scores("s1")} == {"t": 2.0}
    finally:
        await store.close()


async def test_a_pooled_postgres_connection_goes_back_without_a_reset_round_trip(
    postgres_url: str, postgres_schema_url: str
) -> None:
    """asyncpg's default release runs a reset statement: a second round trip (and a
    backend's work) after every query, which doubled what a heartbeat cost PostgreSQL.
    The store leaves no session state, so the last statement a backend saw is ours."""
    import uuid

    import asyncpg

    from tests.origin.control.conftest import with_query

    name = f"vcdn-test-{uuid.uuid4().hex[:8]}"
    store = await open_store(with_query(postgres_schema_url, application_name=name))
    try:
        assert await store.principal("ab" * 32) is None
        assert await store.token_epoch() >= 0
        conn = await asyncpg.connect(postgres_url)
        try:
            last = await conn.fetch(
                "SELECT query FROM pg_stat_activity WHERE application_name = $1", name
            )
        finally:
            await conn.close()
    finally:
        await store.close()
    assert last and all("RESET ALL" not in r["query"] for r in last), last
    assert any("token_epoch" in r["query"] for r in last), last


async def test_a_sites_appliances_are_read_without_the_rest_of_the_fleet(db_url: str) -> None:
    store = await open_store(db_url)
    try:
        for id_, site in [("b2", "s2"), ("a1", "s1"), ("b1", "s2"), ("c1", "s10")]:
            await store.put_appliance(decode(Registration, registration(id_, site=site)), 0.0)
        assert [r.id for r in await store.site_appliances("s2")] == ["b1", "b2"]
        assert [r.id for r in await store.site_appliances("s1")] == ["a1"]
        assert await store.site_appliances("nowhere") == []
    finally:
        await store.close()
