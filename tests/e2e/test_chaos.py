"""Chaos: appliances die (SIGKILL) and come back while several clients play; players must
not notice, steering must stop sending clients to a dead box quickly, and a restarted box
must serve from the cache it kept."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import pytest

from onebox.cluster import ApplianceSlot, Cluster
from onebox.demo import playback_urls, scrape, signed_url
from onebox.hlsclient import FailoverClient, PlayReport
from tests.e2e.conftest import TITLE, ClusterFactory, Packaged, artifacts

pytestmark = pytest.mark.slow

HEARTBEAT = 1.0
CLIENTS = 4
KILLS = 3
PACE = 0.15  # sleep this share of each segment's duration between segments


@dataclass
class Figures:
    failovers: int = 0
    worst_stall: float = 0.0
    drop_times: list[float] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    plays: int = 0
    segments: int = 0


async def client_loop(
    session: aiohttp.ClientSession, cluster: Cluster, packaged: Packaged, seed: int,
    done: asyncio.Event, reports: list[PlayReport],
) -> None:
    """Play the title again and again until the chaos is over, each play asking steering."""
    rng = random.Random(seed)

    async def refresh() -> list[str]:
        return await playback_urls(session, cluster.steering_url, TITLE)

    while not done.is_set():
        urls = await refresh()
        client = FailoverClient(
            session, urls, expected=packaged.sha, refresh=refresh, timeout=2.0, rounds=6
        )
        reports.append(await client.play(rng.choice(["360p", "240p"]), pace=PACE))


async def steered(session: aiohttp.ClientSession, cluster: Cluster) -> set[str]:
    urls = await playback_urls(session, cluster.steering_url, TITLE)
    return {urlsplit(u).netloc for u in urls}


async def chaos_loop(
    session: aiohttp.ClientSession, cluster: Cluster, figures: Figures, rng: random.Random,
    done: asyncio.Event,
) -> None:
    """Kill a random appliance, time how long steering keeps naming it, restart it."""
    try:
        await chaos_rounds(session, cluster, figures, rng)
    finally:
        done.set()


async def chaos_rounds(
    session: aiohttp.ClientSession, cluster: Cluster, figures: Figures, rng: random.Random
) -> None:
    for _ in range(KILLS):
        await asyncio.sleep(1.0)
        slot = rng.choice(cluster.slots)
        assert slot.proc is not None
        slot.proc.kill()
        killed_at = time.monotonic()
        figures.killed.append(slot.id)
        while slot.netloc in await steered(session, cluster):
            assert time.monotonic() - killed_at < 10 * HEARTBEAT, "steering never dropped it"
            await asyncio.sleep(0.05)
        figures.drop_times.append(time.monotonic() - killed_at)
        await asyncio.sleep(0.5)
        await cluster.restart_appliance(slot)
        for _ in range(200):  # back in steering's answers after a heartbeat or two
            if slot.netloc in await steered(session, cluster):
                break
            await asyncio.sleep(0.1)


async def fill_counters(session: aiohttp.ClientSession, slot: ApplianceSlot) -> dict[str, float]:
    m = await scrape(session, slot.url)
    return {k: v for k, v in m.items() if "fill_bytes" in k or k.startswith("vcdn_edge_requests")}


async def test_clients_never_miss_a_segment_while_appliances_are_killed_and_restarted(
    cluster_factory: ClusterFactory, packaged: Packaged, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = await cluster_factory(
        appliances=3, heartbeat_interval=HEARTBEAT, stale_after_beats=1.2, steering_poll=0.2
    )
    figures = Figures()
    reports: list[PlayReport] = []
    async with aiohttp.ClientSession() as session:
        done = asyncio.Event()
        clients = [
            client_loop(session, cluster, packaged, seed, done, reports)
            for seed in range(CLIENTS)
        ]
        chaos = chaos_loop(session, cluster, figures, random.Random(7), done)
        async with asyncio.timeout(90):
            await asyncio.gather(chaos, *clients)

        # Every play delivered every byte, each checked against manifest.json's sha256.
        failed = [path for r in reports for path in r.failed]
        assert failed == [], f"failed fetches: {failed[:10]} ({reports[0].errors[:3]})"
        for r in reports:
            wanted = sorted(
                f.path for f in packaged.manifest.files
                if f.path.startswith(r.variant + "/") and not f.path.endswith(".m3u8")
            )
            assert sorted(f.path for f in r.segments) == wanted
            assert all(f.sha256 == packaged.sha[f.path] for f in r.fetches)
            # Never the origin: the failover stayed among appliances.
            assert all(f.server != urlsplit(cluster.origin_url).netloc for f in r.fetches)
        figures.plays = len(reports)
        figures.segments = sum(len(r.segments) for r in reports)
        figures.failovers = sum(r.failovers for r in reports)
        figures.worst_stall = max(r.worst_stall for r in reports)
        assert figures.plays >= CLIENTS and len(figures.drop_times) == KILLS

        # Steering stops naming a killed appliance within two heartbeat intervals.
        assert max(figures.drop_times) <= 2 * HEARTBEAT, figures

        # A restarted appliance serves its cache without refilling it.
        slot = next(s for s in cluster.slots if s.id == figures.killed[-1])
        before = await fill_counters(session, slot)
        for f in packaged.manifest.files:
            async with session.get(signed_url(cluster, slot.url, TITLE, f.path)) as resp:
                assert resp.status == 200
                await resp.read()
        after = await fill_counters(session, slot)
        assert after.get("vcdn_edge_fill_bytes_total", 0) == 0, after
        assert after.get("vcdn_appliance_fill_bytes_total", 0) == 0, after
        assert after.get("vcdn_edge_requests_total{result=miss}", 0) == before.get(
            "vcdn_edge_requests_total{result=miss}", 0
        ), (before, after)
        assert after.get("vcdn_edge_requests_total{result=hit}", 0) >= len(packaged.manifest.files)

    text = (
        f"chaos: {KILLS} SIGKILLs ({', '.join(figures.killed)}), {figures.plays} plays by "
        f"{CLIENTS} clients, {figures.segments} segments, 0 failed; {figures.failovers} "
        f"failovers, worst stall {figures.worst_stall * 1000:.0f} ms; time to drop a dead "
        f"appliance: max {max(figures.drop_times) * 1000:.0f} ms, "
        f"mean {sum(figures.drop_times) / KILLS * 1000:.0f} ms (heartbeat {HEARTBEAT:g} s)"
    )
    with capsys.disabled():
        print(f"\n{text}")
    (artifacts() / "chaos.json").write_text(json.dumps(figures.__dict__ | {"text": text}))
