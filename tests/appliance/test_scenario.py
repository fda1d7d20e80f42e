"""The issue's "done when", as real processes on loopback: an origin, a control plane, a
packaged title, two appliances in one site and one in another, each started from its TOML
file. They register; a client request makes the title popular; the first appliance of the
site fills it inside its (forced, always-open) fill window, the second, whose window is
closed, fills on `appliance-ctl fill-now` from its peer, which shows in its metrics, logs
and `appliance-ctl status`; both serve it; drain reaches the control plane; SIGTERM stops
everything cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from onebox.procs import free_port
from tests.appliance.conftest import (
    OPERATOR,
    PACKAGER,
    ROOT,
    Proc,
    api,
    appliance_toml,
    enroll,
    signed,
    start_proc,
    until,
)
from tests.conftest import require_tool


async def ctl(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vcdn.cli", "appliance-ctl", *args, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "VCDN_OPERATOR_TOKEN"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    return proc.returncode or 0, out.decode(), err.decode()


def closed_window() -> str:
    """A one-hour local-time window starting at least an hour from now: closed throughout."""
    start = datetime.now() + timedelta(hours=2)
    end = start + timedelta(hours=1)
    return f"{start:%H}:00-{end:%H}:00"


async def package(tmp_path: Path, origin_root: Path, control_url: str) -> dict[str, Any]:
    ffmpeg = require_tool("ffmpeg")
    src = tmp_path / "src.mp4"
    make = await asyncio.create_subprocess_exec(
        ffmpeg, "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x90:rate=10",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050", "-t", "2",
        "-c:v", "libx264", "-c:a", "aac", "-shortest", str(src),
    )
    assert await make.wait() == 0
    pkg = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vcdn.cli", "package", str(src), "--title", "movie",
        "--ladder", "144", "--segment-seconds", "1", "--origin-root", str(origin_root),
        "--control", control_url, cwd=ROOT,
        env={**os.environ, "VCDN_CONTROL_TOKEN": PACKAGER},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(pkg.communicate(), 60)
    assert pkg.returncode == 0, err.decode()
    return json.loads((origin_root / "movie" / "manifest.json").read_text())


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or (line.startswith(name + "{") and line.split()[0] == name):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.slow
async def test_two_sites_three_appliances_register_fill_peer_fill_serve_and_operate(
    tmp_path: Path,
) -> None:
    procs: list[Proc] = []
    try:
        origin_root = tmp_path / "origin"
        origin_root.mkdir()
        origin = await start_proc(
            ["origin", "--root", str(origin_root), "--port", "0"], tmp_path / "origin.log"
        )
        procs.append(origin)
        origin_url = origin.line.split("listening on ")[1].split()[0]
        control = await start_proc(
            ["control", "--db", f"sqlite:///{tmp_path / 'control.db'}", "--port", "0"],
            tmp_path / "control.log",
            env={
                "VCDN_CONTROL_TOKENS": f"operator:{OPERATOR},packager:{PACKAGER}",
                "VCDN_CONTROL_HEARTBEAT_INTERVAL": "0.3",
            },
        )
        procs.append(control)
        control_url = control.line.split("listening on ")[1].split()[0]
        manifest = await package(tmp_path, origin_root, control_url)
        files = [f["path"] for f in manifest["files"]]

        configs: dict[str, Path] = {}
        public: dict[str, str] = {}
        for name, site, window in (
            ("a1", "isp-a", "always"), ("a2", "isp-a", closed_window()), ("b1", "isp-b", "always"),
        ):
            port = free_port()
            token = await enroll(control_url, name, site)  # the operator admits each box
            configs[name] = appliance_toml(
                tmp_path / f"{name}.toml", id=name, site=site, port=port,
                admin_port=free_port(), cache_dir=tmp_path / f"cache-{name}",
                control_url=control_url, origin_url=origin_url, fill_window=window,
                control_token=token,
            )
            public[name] = f"http://127.0.0.1:{port}"
            procs.append(await start_proc(["appliance", "--config", str(configs[name])],
                                          tmp_path / f"{name}.log"))
        a1, a2, b1 = procs[2:]
        assert "listening on" in b1.line

        async def registered() -> bool:
            listing = await api(control_url, "GET", "/appliances")
            return {a["id"] for a in listing["appliances"] if a["state"] == "healthy"} == {
                "a1", "a2", "b1"}

        await until(registered, within=15)

        # A viewer in site B plays the title: b1 fills on demand and reports the requests.
        async with aiohttp.ClientSession() as s:
            for path in files:
                async with s.get(f"{public['b1']}/s/{signed('movie')}/movie/{path}") as resp:
                    assert resp.status == 200, path

        async def popular_in_b() -> bool:
            scores = await api(control_url, "GET", "/popularity?site=isp-b")
            return any(s["title"] == "movie" for s in scores["scores"])

        await until(popular_in_b, within=10)
        # a1 (window open) fills from the origin; a2 (window closed) does not yet.
        await until(lambda: a1.events("title_filled"), within=20)
        assert not a2.events("title_filled")
        code, out, err = await ctl("fill-now", "--config", str(configs["a2"]))
        assert code == 0, err
        await until(lambda: a2.events("title_filled"), within=20)
        peer_fetches = [e for e in a2.events("fill_file") if e["source"] == "peer"]
        assert len(peer_fetches) == len(files)
        assert all(e["url"].startswith(public["a1"] + "/s/") for e in peer_fetches)

        async with aiohttp.ClientSession() as s:
            async with s.get(f"{public['a2']}/metrics") as resp:
                text = await resp.text()
            assert metric(text, 'vcdn_appliance_fill_files_total{source="peer"}') == len(files)
            assert metric(text, 'vcdn_appliance_fill_files_total{source="origin"}') == 0
            for name in ("a1", "a2"):
                for path in files:
                    url = f"{public[name]}/s/{signed('movie')}/movie/{path}"
                    async with s.get(url) as resp:
                        assert resp.status == 200
                        assert (await resp.read()) == (origin_root / "movie" / path).read_bytes()
            # A peer without a token is no open proxy: 403, and nothing fetched upstream.
            async with s.get(f"{public['a1']}/v/movie/{files[0]}") as resp:
                assert resp.status in (403, 404)

        code, out, err = await ctl("status", "--config", str(configs["a2"]))
        assert code == 0, err
        assert "appliance a2 (site isp-a): serving" in out
        assert "files from peers" in out and f"files from peers {len(files)}" in out
        assert "1/1 titles complete" in out and "registered" in out
        assert "closed" in out

        code, out, err = await ctl("drain", "--config", str(configs["a1"]))
        assert code == 0, err

        async def a1_draining() -> bool:
            listing = await api(control_url, "GET", "/appliances")
            return any(a["id"] == "a1" and a["state"] == "draining" for a in listing["appliances"])

        await until(a1_draining, within=10)
        code, out, _ = await ctl("status", "--config", str(configs["a1"]))
        assert "a1 (site isp-a): draining" in out

        for proc in reversed(procs):
            assert await proc.terminate() == 0
    finally:
        for proc in procs:
            if proc.process.returncode is None:
                proc.kill9()
                await proc.process.wait()
