"""The admin API and `vcdn appliance-ctl`: token required, drain reaches the control plane,
purge, readable status; bad input gets one clear line, never a traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from appliance import settings as settings_mod
from appliance.ctl import format_status
from onebox.procs import free_port
from tests.appliance.conftest import (
    ADMIN_TOKEN,
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
from vcdn.cli import main as vcdn_main


async def vcdn(*argv: str) -> int:
    return await asyncio.to_thread(vcdn_main, list(argv))


def test_status_summary_reads_like_a_report() -> None:
    snapshot = {
        "appliance": "a1", "site": "isp", "state": "serving", "health": "healthy",
        "registered": True, "last_heartbeat": 95.0, "heartbeat_error": "",
        "cache": {"bytes_used": 512 * 1024**2, "capacity": 2 * 1024**3, "objects": 12,
                  "disk_free": 10 * 1024**3},
        "served": {"hit_ratio": 0.875, "bytes": 3 * 1024**2, "connections": 4},
        "fill": {"window": "02:00-14:00", "window_open": False, "titles_complete": 3,
                 "titles_total": 4, "bytes_missing": 1024**2, "bytes_total": 8 * 1024**2,
                 "running": False, "from_peers": 7, "from_origin": 2, "rejected": 1,
                 "paused": "Fill paused: the cache disk is full.", "last_run_at": 90.0,
                 "last_error": ""},
        "upstream": {"origin": {"ok": False, "detail": "refused"},
                     "peer http://p:1": {"ok": True, "detail": ""}},
        "checks": {"free_space": {"ok": False, "detail": "12 bytes free"}},
    }
    text = format_status(snapshot, now=100.0)
    for expected in (
        "appliance a1 (site isp): serving, reports healthy",
        "registered, last heartbeat 5.0 s ago",
        "512.0 MiB used of 2.0 GiB (25.0%), 12 objects",
        "hit ratio 87.5%",
        "window 02:00-14:00 (closed), 3/4 titles complete, 1.0 MiB missing of 8.0 MiB",
        "files from peers 7, from origin 2, rejected 1",
        "PAUSED: Fill paused: the cache disk is full.",
        "origin: FAILING (refused)",
        "peer http://p:1: ok",
        "free_space: FAILING (12 bytes free)",
    ):
        assert expected in text, expected


async def test_admin_api_and_ctl_against_a_running_appliance(
    tmp_path: Path, origin: Served, control: Served, origin_root: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    await publish(control.url, make_title(origin_root, "t1", {"a.ts": blob(5000, 1)}))
    await make_popular(control.url, {"t1": 1})
    admin_port = free_port()
    config = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=free_port(), admin_port=admin_port,
        cache_dir=tmp_path / "cache", control_url=control.url, origin_url=origin.url,
        heartbeat_interval=5.0,
    )
    running = await run_appliance(settings_mod.load(config, env={}))
    app = running.appliance
    admin = running.urls["admin"]
    try:
        await until(lambda: app.status.fill.titles_complete == 1 and app.status.last_heartbeat)
        async with aiohttp.ClientSession() as s:
            for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"},
                            {"Authorization": f"Basic {ADMIN_TOKEN}"}):
                async with s.get(admin + "/api/v1/status", headers=headers) as resp:
                    assert resp.status == 401
                    assert "Bearer" in (await resp.json())["detail"]
            async with s.post(admin + "/api/v1/drain") as resp:
                assert resp.status == 401 and not app.edge.draining
            async with s.get(admin + "/healthz") as resp:
                assert (await resp.json())["state"] == "serving"
            auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with s.post(admin + "/api/v1/purge/bad!title", headers=auth) as resp:
                assert resp.status == 400 and "not valid" in (await resp.json())["detail"]

        # Token from the environment; the default admin address comes from --config.
        monkeypatch.setenv("VCDN_OPERATOR_TOKEN", ADMIN_TOKEN)
        assert await vcdn("appliance-ctl", "status", "--appliance", admin) == 0
        assert "appliance a1 (site s1): serving" in capsys.readouterr().out

        assert await vcdn("appliance-ctl", "drain", "--config", str(config)) == 0
        assert app.status.state == "draining" and app.edge.draining

        async def control_says(state: str) -> bool:
            listing = await api(control.url, "GET", "/appliances")
            return any(a["id"] == "a1" and a["state"] == state for a in listing["appliances"])

        await until(lambda: control_says("draining"), within=5)  # beat_now, not in 5 s
        assert await vcdn("appliance-ctl", "undrain", "--appliance", admin) == 0
        await until(lambda: control_says("healthy"), within=5)

        assert app.edge.store.has("t1", "a.ts")
        capsys.readouterr()
        assert await vcdn("appliance-ctl", "purge", "t1", "--appliance", admin) == 0
        assert "purged t1: 1 objects removed" in capsys.readouterr().out
        assert not app.edge.store.has("t1", "a.ts")

        assert await vcdn("appliance-ctl", "purge", "../etc", "--appliance", admin) == 1
        assert "not valid" in capsys.readouterr().err
        assert await vcdn("appliance-ctl", "fill-now", "--appliance", admin) == 0
        await until(lambda: app.edge.store.has("t1", "a.ts"))
    finally:
        await running.stop()


async def test_ctl_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("VCDN_OPERATOR_TOKEN", raising=False)
    assert await vcdn("appliance-ctl", "status") == 1
    assert "No operator token" in capsys.readouterr().err
    monkeypatch.setenv("VCDN_OPERATOR_TOKEN", ADMIN_TOKEN)
    assert await vcdn("appliance-ctl", "status", "--appliance",
                      f"http://127.0.0.1:{free_port()}") == 1
    err = capsys.readouterr().err
    assert "Cannot reach the appliance admin API" in err and "Traceback" not in err
    assert await vcdn("appliance-ctl", "purge") == 2
    assert await vcdn("appliance-ctl", "drain", "extra") == 2
    with pytest.raises(SystemExit):
        await vcdn("appliance-ctl", "reboot")
