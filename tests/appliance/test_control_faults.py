"""Control plane down: the appliance keeps serving, backs off (capped, jittered), and
registers again when the control plane comes back, even with its state lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp

from appliance import settings as settings_mod
from onebox.procs import free_port
from tests.appliance.conftest import (
    Served,
    api,
    appliance_toml,
    blob,
    make_popular,
    make_title,
    publish,
    run_appliance,
    signed,
    start_control,
    until,
)


def sample(app: object, name: str, **labels: str) -> float:
    return app.edge.registry.get_sample_value(name, labels) or 0.0  # type: ignore[attr-defined]


async def test_control_down_keeps_serving_backs_off_and_reregisters_on_return(
    tmp_path: Path, origin: Served, origin_root: Path
) -> None:
    control_port = free_port()
    control = await start_control(tmp_path / "c1.db", control_port, interval=0.2)
    files = {"s.ts": blob(30_000, 4)}
    await publish(control.url, make_title(origin_root, "keep", files))
    await make_popular(control.url, {"keep": 2})
    path = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=free_port(), admin_port=free_port(),
        cache_dir=tmp_path / "cache", control_url=control.url, origin_url=origin.url,
        heartbeat_interval=0.2,
    )
    running = await run_appliance(settings_mod.load(path, env={}))
    app = running.appliance
    try:
        await until(lambda: app.status.fill.titles_complete == 1 and app.status.control_ok)
        assert sample(app, "vcdn_appliance_registrations_total", result="ok") == 1

        await control.stop()
        await until(lambda: sample(app, "vcdn_appliance_heartbeats_total", result="error") >= 1
                    and sample(app, "vcdn_appliance_registrations_total", result="error") >= 2,
                    within=10)
        assert app.status.control_ok is False and app.status.heartbeat_error
        # Backoff: the retry gap grows but stays under its cap (6 beats here: 1.2 s).
        assert app.control is not None
        delays = [app.control.backoff.next_delay() for _ in range(8)]
        assert all(d <= 1.2 for d in delays) and max(delays) > 0.2
        app.control.backoff.attempt = 1
        url = f"{running.urls['public']}/s/{signed('keep')}/keep/s.ts"
        async with aiohttp.ClientSession() as s, s.get(url) as resp:
            assert resp.status == 200 and await resp.read() == files["s.ts"]

        # It comes back empty (a new database): the appliance registers itself again.
        control = await start_control(tmp_path / "c2.db", control_port, interval=0.2)
        await until(lambda: app.status.control_ok and app.status.registered, within=10)
        listing = await api(control.url, "GET", "/appliances")
        assert [a["id"] for a in listing["appliances"]] == ["a1"]
        assert sample(app, "vcdn_appliance_registrations_total", result="ok") == 2
    finally:
        await running.stop()
        await control.stop()


async def test_a_404_for_our_id_makes_the_appliance_register_again(
    tmp_path: Path, origin: Served
) -> None:
    """The control plane lost the appliance's row (a database restored from an older
    backup): its next beat gets 404, and it registers again. An operator's decommission
    is different: it revokes the appliance's tokens, so the box stays out."""
    control = await start_control(tmp_path / "c.db", interval=0.2)
    path = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=free_port(), admin_port=free_port(),
        cache_dir=tmp_path / "cache", control_url=control.url, origin_url=origin.url,
        heartbeat_interval=0.2,
    )
    running = await run_appliance(settings_mod.load(path, env={}))
    app = running.appliance
    try:
        await until(lambda: app.status.last_heartbeat)
        with sqlite3.connect(tmp_path / "c.db") as db:
            db.execute("DELETE FROM appliances WHERE id = 'a1'")
        await until(lambda: sample(app, "vcdn_appliance_heartbeats_total", result="unknown") >= 1)
        await until(lambda: sample(app, "vcdn_appliance_registrations_total", result="ok") >= 2)
        listing = await api(control.url, "GET", "/appliances")
        assert [a["id"] for a in listing["appliances"]] == ["a1"]

        answer = await api(control.url, "DELETE", "/appliances/a1")
        assert answer == {"deleted": "a1", "revoked": 1}
        await until(lambda: sample(app, "vcdn_appliance_heartbeats_total", result="rejected")
                    + sample(app, "vcdn_appliance_registrations_total", result="error") >= 2)
        listing = await api(control.url, "GET", "/appliances")
        assert listing["appliances"] == []
    finally:
        await running.stop()
        await control.stop()


async def test_started_while_control_is_down_it_fills_from_the_saved_manifest(
    tmp_path: Path, origin: Served, origin_root: Path
) -> None:
    control = await start_control(tmp_path / "c.db", interval=0.2)
    files = {"x.ts": blob(20_000, 8)}
    await publish(control.url, make_title(origin_root, "saved", files))
    await make_popular(control.url, {"saved": 3})
    common = dict(
        port=free_port(), admin_port=free_port(), cache_dir=tmp_path / "cache",
        control_url=control.url, origin_url=origin.url, heartbeat_interval=0.2,
    )
    # First run: window closed, so it only learns (and saves) its manifest.
    closed = appliance_toml(tmp_path / "a.toml", id="a1", site="s1",
                            fill_window="00:00-00:01", **common)  # type: ignore[arg-type]
    running = await run_appliance(settings_mod.load(closed, env={}))
    await until(lambda: running.appliance.status.fill.manifest_at)
    assert not running.appliance.edge.store.has("saved", "x.ts")
    await running.stop()
    await control.stop()

    # Second run: the control plane is gone; the window is open.
    opened = appliance_toml(tmp_path / "b.toml", id="a1", site="s1", **common)  # type: ignore[arg-type]
    running = await run_appliance(settings_mod.load(opened, env={}))
    app = running.appliance
    try:
        await until(lambda: app.edge.store.has("saved", "x.ts"), within=15)
        assert not app.status.registered
        assert app.status.fill.manifest_at is None, "the manifest came from disk, not control"
        url = f"{running.urls['public']}/s/{signed('saved')}/saved/x.ts"
        async with aiohttp.ClientSession() as s, s.get(url) as resp:
            assert resp.status == 200 and await resp.read() == files["x.ts"]
    finally:
        await running.stop()
