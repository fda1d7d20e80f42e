"""Low-latency HLS to the glass: `vcdn live --low-latency` → origin → appliance → hls.js
(lowLatencyMode) in headless Chromium, with the latency (wall clock minus the program date
time at the playing position) and stalls measured."""

from __future__ import annotations

import json
import statistics
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from onebox.demo import wait_live
from tests.e2e.conftest import artifacts
from tests.e2e.test_browser import LIVE_SOURCE, appliance_hosts, browser, segment_hosts

pytestmark = pytest.mark.slow
__all__ = ["browser"]
#: The issue's targets are 3 s p50 and 4 s p95 on a quiet machine; a loaded box gets slack.
P50_BOUND_S = 4.0
P95_BOUND_S = 6.0
SAMPLES = 24  # the player samples twice a second: 12 s of playing


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def test_low_latency_live_plays_through_an_appliance_within_seconds(
    cluster_factory: Any, browser: Any
) -> None:
    cluster = await cluster_factory(fill=False, heartbeat_interval=0.5)
    await cluster.start_live("ll", segment_seconds=2.0, ladder="240,144", source=LIVE_SOURCE,
                             preset="ultrafast", low_latency=True)
    async with aiohttp.ClientSession() as session:
        urls = await wait_live(session, cluster, "ll", within=90)
    assert urlsplit(urls[0]).netloc in appliance_hosts(cluster)
    page = await browser.new_page(viewport={"width": 1100, "height": 1000})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    response = await page.goto(f"{cluster.control_url}/player?title=ll&steering="
                               f"{cluster.steering_url}&latency=low")
    assert response is not None and response.status == 200
    try:
        await page.wait_for_function(
            f"window.vcdnPlayer.latencies.length >= {SAMPLES}"
            " || window.vcdnPlayer.fatal.length > 0",
            timeout=60_000,
        )
    except Exception as exc:
        await page.screenshot(path=str(artifacts() / "player-llhls-failed.png"))
        raise AssertionError(f"low-latency playback: {exc}\n{await page.inner_text('#log')}") \
            from None
    state = await page.evaluate("window.vcdnPlayer")
    log = await page.inner_text("#log")
    assert state["fatal"] == [] and state["live"] is True, log
    # hls.js used the low-latency machinery: parts and blocking reloads, through appliances.
    assert any("/part_" in u for u in requests), requests[-20:]
    assert any("_HLS_msn=" in u and "_HLS_part=" in u for u in requests), requests[-20:]
    # The sound is the audio group's rendition, with parts of its own.
    assert any("/ll/audio/part_" in u for u in requests), requests[-20:]
    page.requests = requests  # type: ignore[attr-defined]
    hosts = segment_hosts(page) | {urlsplit(u).netloc for u in requests if "/part_" in u}
    assert hosts and hosts <= appliance_hosts(cluster), hosts
    # Stalls and latency once playing settled (the first seconds include the start-up).
    latencies = state["latencies"][4:]
    p50, p95 = statistics.median(latencies), quantile(latencies, 0.95)
    (artifacts() / "llhls-latency.json").write_text(json.dumps({
        "segment_seconds": 2.0, "part_seconds": 0.333, "p50_s": p50, "p95_s": p95,
        "stalls": state["stalls"], "samples": state["latencies"],
    }))
    print(f"low-latency live: p50 {p50:.2f} s, p95 {p95:.2f} s, {state['stalls']} stalls "
          f"over {len(latencies)} samples")
    assert state["stalls"] == 0, log
    assert 0 < p50 <= P50_BOUND_S and p95 <= P95_BOUND_S, state["latencies"]
    await page.close()
