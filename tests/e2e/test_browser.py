"""The web player and the operator dashboard in a real headless Chromium (Debian's), served
by the control plane, playing through real appliances."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import statistics
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from onebox.cluster import Cluster
from onebox.demo import make_sample, playback_urls, wait_live
from onebox.procs import run_to_end, vcdn_argv
from tests.conftest import IN_CI, ROOT
from tests.e2e.conftest import TITLE, artifacts

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
PLAY_SECONDS = 5.0


def need(what: str, why: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is missing: {why}")
    pytest.skip(f"{what} is missing: {why}")


def check_browser_files() -> None:
    if not Path(CHROMIUM).exists():
        need("chromium", "`make test` installs Debian's chromium")
    if not (ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.js").exists():
        need("hls.js", "`make install` runs `npm ci`, which installs it into node_modules/")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        need("playwright", "`make install` installs the test extras")
    check_browser_files()
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


def appliance_hosts(cluster: Cluster) -> set[str]:
    return {s.netloc for s in cluster.slots}


async def open_player(
    browser: Any, cluster: Cluster, block: set[str] = frozenset(), title: str = TITLE,
    protocol: str = "hls",
) -> Any:
    """A page on the player with every request recorded; hosts in `block` are unreachable."""
    page = await browser.new_page(viewport={"width": 1100, "height": 1000})
    page.requests = []  # type: ignore[attr-defined]
    page.console = []  # type: ignore[attr-defined]
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("console", lambda m: page.console.append(f"{m.type}: {m.text}"))
    for host in block:
        # A network failure of that appliance, as the browser sees a dead box.
        await page.route(f"http://{host}/**", lambda route: route.abort("connectionrefused"))
    url = (f"{cluster.control_url}/player?title={title}&steering={cluster.steering_url}"
           f"&protocol={protocol}")
    response = await page.goto(url)
    assert response is not None and response.status == 200
    return page


async def played(page: Any, seconds: float) -> dict[str, Any]:
    """The player's state once the video has played `seconds`; on failure, what it saw."""
    try:
        await page.wait_for_function(
            f"document.getElementById('video').currentTime >= {seconds}"
            " || window.vcdnPlayer.fatal.length > 0",
            timeout=30_000,
        )
        state = await page.evaluate("window.vcdnPlayer")
        assert state["fatal"] == [], state["fatal"]
    except Exception as exc:
        await page.screenshot(path=str(artifacts() / "player-failed.png"))
        log = await page.inner_text("#log")
        raise AssertionError(f"the player did not play {seconds} s: {exc}\n{log}\n"
                             f"{page.console}") from None
    return state


def segment_hosts(page: Any) -> set[str]:
    return {urlsplit(u).netloc for u in page.requests if u.endswith((".m4s", ".ts", "init.mp4"))}


async def require_cors(cluster: Cluster) -> None:
    """The player page (control's origin) calls steering's playback API cross-origin."""
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{cluster.steering_url}/v1/playback/{TITLE}", headers={"Origin": cluster.control_url}
        ) as resp:
            allowed = resp.headers.get("Access-Control-Allow-Origin")
    assert allowed in ("*", cluster.control_url), (
        "steering's GET /v1/playback must send Access-Control-Allow-Origin, or a browser "
        "player served by the control plane cannot read its answer"
    )


async def test_the_player_plays_through_appliances_falls_back_and_reports_errors(
    module_cluster: Cluster, browser: Any
) -> None:
    cluster = module_cluster
    await require_cors(cluster)

    # Plays at least 5 s, every segment from an appliance, never from the origin.
    page = await open_player(browser, cluster)
    state = await played(page, PLAY_SECONDS)
    assert state["failovers"] == 0
    hosts = segment_hosts(page)
    assert hosts and hosts <= appliance_hosts(cluster), hosts
    assert urlsplit(cluster.origin_url).netloc not in hosts
    assert await page.inner_text("#status") in ("playing", "ended")
    assert state["rendition"].endswith("kb/s") and state["appliance"]
    assert float((await page.inner_text("#buffer")).split()[0]) >= 0
    await page.screenshot(path=str(artifacts() / "player.png"))
    await page.close()

    # The first ranked appliance is unreachable: the player moves to the next URL.
    async with aiohttp.ClientSession() as session:
        urls = await playback_urls(session, cluster.steering_url, TITLE)
    first, second = urlsplit(urls[0]).netloc, urlsplit(urls[1]).netloc
    page = await open_player(browser, cluster, block={first})
    state = await played(page, 3.0)
    assert state["failovers"] == 1
    assert segment_hosts(page) == {second}
    await page.screenshot(path=str(artifacts() / "player-failover.png"))
    await page.close()

    # A title steering does not know is an error on the page, not a blank player.
    page = await browser.new_page()
    await page.goto(f"{cluster.control_url}/player?title=nope&steering={cluster.steering_url}")
    await page.wait_for_function("window.vcdnPlayer.fatal.length > 0", timeout=10_000)
    assert "not in the catalog" in await page.inner_text("#status")


# Switch a DASH player to the video rendition it is not playing, by each player's own API;
# each returns the height it switched to.
SWITCH = {
    "dash": """() => {
        const p = window.vcdnDash;
        p.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: false } } } });
        const now = p.getCurrentRepresentationForType("video");
        const other = p.getRepresentationsByType("video").find((r) => r.id !== now.id);
        p.setRepresentationForTypeById("video", other.id, true);
        return other.height;
    }""",
    "shaka": """() => {
        const p = window.vcdnShaka;
        p.configure({ abr: { enabled: false } });
        const other = p.getVariantTracks().find((t) => !t.active);
        p.selectVariantTrack(other, true);
        return other.height;
    }""",
}
RESOURCES = "performance.getEntriesByType('resource')"


def renditions_fetched(page: Any) -> set[str]:
    """The video rendition directories the page fetched media segments from."""
    return {urlsplit(u).path.split(f"/{TITLE}/", 1)[1].split("/")[0] for u in page.requests
            if u.endswith(".m4s")} - {"audio"}


@pytest.mark.parametrize("player", ["dash", "shaka"])
async def test_dash_players_play_the_mpd_from_the_hls_segments_and_switch_levels(
    module_cluster: Cluster, browser: Any, player: str
) -> None:
    cluster = module_cluster
    package = {"dash": "dashjs", "shaka": "shaka-player"}[player]
    if not (ROOT / "node_modules" / package / "dist").exists():
        need(package, "`make install` runs `npm ci`, which installs it into node_modules/")
    page = await open_player(browser, cluster, protocol=player)
    state = await played(page, 3.0)
    mpds = [u for u in page.requests if u.endswith("/manifest.mpd")]
    assert mpds and all("/s/" in u for u in mpds)  # the signed path, as for HLS
    hosts = segment_hosts(page)
    assert hosts and hosts <= appliance_hosts(cluster), hosts
    # The segments are the HLS ones: the same init and media files, video and audio.
    names = {urlsplit(u).path.split(f"/{TITLE}/", 1)[1] for u in page.requests
             if u.endswith((".m4s", "init.mp4"))}
    assert any(n.startswith("audio/") for n in names)
    assert any(n.endswith("/init.mp4") and not n.startswith("audio/") for n in names)
    # A level switch: to the other rendition, whose segments must then be fetched.
    seen = await page.evaluate(f"{RESOURCES}.length")
    height = await page.evaluate(SWITCH[player])
    try:
        await page.wait_for_function(
            f"{RESOURCES}.slice({seen}).some(e => e.name.includes('/{height}p/seg_'))"
            " || window.vcdnPlayer.fatal.length > 0",
            timeout=30_000,
        )
    except Exception as exc:
        raise AssertionError(f"{player} did not switch to {height}p: {exc}; "
                             f"{page.console}") from None
    state = await played(page, PLAY_SECONDS)
    assert f"{height}p" in renditions_fetched(page)
    assert state["failovers"] == 0 and state["fragments"]
    await page.screenshot(path=str(artifacts() / f"player-{player}.png"))
    await page.close()


async def appliance_ctl(cluster: Cluster, slot_id: str, verb: str) -> None:
    """`vcdn appliance-ctl drain|undrain` against one appliance, as an operator would."""
    slot = next(s for s in cluster.slots if s.id == slot_id)
    await run_to_end(
        f"appliance-ctl {verb} {slot_id}",
        vcdn_argv("appliance-ctl", verb, "--appliance", slot.admin_url),
        log_path=cluster.logs / "appliance-ctl.log",
        env=cluster.env(VCDN_OPERATOR_TOKEN=cluster.secrets.admin), within=30,
    )


async def test_the_dashboard_lists_every_appliance_with_site_totals_and_charts(
    module_cluster: Cluster, browser: Any
) -> None:
    cluster = module_cluster
    dash = await browser.new_page(viewport={"width": 1300, "height": 1000})
    response = await dash.goto(f"{cluster.control_url}/dashboard#token={cluster.secrets.operator}")
    assert response is not None and response.status == 200
    await dash.wait_for_function("window.vcdnDashboard.appliances.length === 3", timeout=15_000)
    rows = await dash.locator("#appliances tbody tr").all_inner_texts()
    assert sorted(r.split("\t")[0] for r in rows) == ["a1", "a2", "a3"]
    assert all("healthy" in r for r in rows)
    assert all("MB" in r.split("\t")[6] for r in rows)  # cache used: the filled title
    sites = await dash.locator("#sites tbody tr").all_inner_texts()
    assert [s.split("\t")[:3] for s in sites] == [["site-a", "2", "2"], ["site-b", "1", "1"]]
    # Each enrolment with its approved prefixes, beside what the appliance registered.
    enrolled = await dash.locator("#enrollments tbody tr").all_inner_texts()
    assert sorted(r.split("\t")[:4] for r in enrolled) == [
        ["a1", "site-a", "127.0.0.0/8", "127.0.0.0/8"],
        ["a2", "site-a", "127.0.0.0/8", "127.0.0.0/8"],
        ["a3", "site-b", "192.0.2.0/24", "192.0.2.0/24"],
    ]
    # One line per appliance in each chart once stored heartbeats come back.
    await dash.wait_for_function(
        "document.querySelectorAll('#chart-hits path').length === 3"
        " && document.querySelectorAll('#chart-bytes path').length === 3",
        timeout=15_000,
    )
    assert "#token" not in dash.url  # the token left the address bar
    # It refreshes itself: an appliance drained with the operator tool shows up as draining
    # without a reload, and as healthy again once undrained.
    a3_row = "[...document.querySelectorAll('#appliances tbody tr')]" \
        ".find(r => r.cells[0].innerText.trim() === 'a3').innerText"
    await appliance_ctl(cluster, "a3", "drain")
    try:
        await dash.wait_for_function(f"{a3_row}.includes('draining')", timeout=20_000)
    finally:
        await appliance_ctl(cluster, "a3", "undrain")
    await dash.wait_for_function(f"{a3_row}.includes('healthy')", timeout=20_000)
    await dash.screenshot(path=str(artifacts() / "dashboard.png"), full_page=True)

    # Without a token it asks for one instead of showing an empty fleet.
    anon = await browser.new_page()
    await anon.goto(f"{cluster.control_url}/dashboard")
    await anon.wait_for_selector("#login:not([hidden])", timeout=5_000)


async def test_pages_and_scripts_are_served_and_unknown_files_are_404(
    module_cluster: Cluster,
) -> None:
    cluster = module_cluster
    async with aiohttp.ClientSession() as session:
        for path, kind in [("/", "text/html"), ("/player", "text/html"),
                           ("/dashboard", "text/html"), ("/static/hls.js", "javascript"),
                           ("/static/player.js", "javascript"), ("/static/style.css", "text/css")]:
            async with session.get(cluster.control_url + path) as resp:
                assert resp.status == 200, path
                assert kind in resp.headers["Content-Type"], (path, resp.headers["Content-Type"])
        async with session.get(cluster.control_url + "/static/hls.js") as resp:
            assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
        for path in ["/static/nope.js", "/static/..%2Froutes.py", "/static/.hidden",
                     "/static/" + "x" * 300]:
            async with session.get(cluster.control_url + path) as resp:
                assert resp.status == 404, path


LIVE_SOURCE = "lavfi:testsrc2=size=426x240:rate=30[out0];sine=frequency=440:sample_rate=48000[out1]"
#: The target glass-to-glass latency (program date time to playback) with 2 s segments.
LIVE_LATENCY_BOUND_S = 6.0


#: Longest interruption allowed when the playing appliance dies: the failed loads (one
#: quick retry) and a fresh start on the next appliance.
FAILOVER_STALL_BOUND_S = 6.0
#: Longest wait beyond the origin's outage: the edge's circuit breaker does not ask a
#: failed upstream again for 5 s, and a player stuck 6 s starts over at the live edge.
ORIGIN_BLINK_STALL_BOUND_S = 15.0


async def test_a_live_event_plays_through_appliances_seconds_behind_live(
    cluster_factory: Any, browser: Any
) -> None:
    """`vcdn live` → origin → appliances: ffmpeg reads the live stream through an appliance,
    hls.js plays it with the live badge, and the latency (wall clock minus the program
    date time at the playing position) is measured; SIGKILL of one of two redundant
    pipelines during 20 s of playback causes no stall. Then the playing appliance is
    SIGKILLed (the player fails over along steering's list within a bound) and the origin
    blinks (stale-if-error carries the player through). Last, dash.js and Shaka Player
    play the same event from its dynamic MPD (the same segments, audio its own adaptation
    set) and ffprobe reads it. Live titles are pulled through, so this cluster fills
    nothing."""
    cluster = await cluster_factory(fill=False, heartbeat_interval=0.5)
    # Two redundant pipelines on the same source; one is killed during playback below.
    pipelines = [
        await cluster.start_live("live", segment_seconds=2.0, ladder="240,144",
                                 source=LIVE_SOURCE, preset="ultrafast")
        for _ in range(2)
    ]
    async with aiohttp.ClientSession() as session:
        urls = await wait_live(session, cluster, "live", within=90)
    assert urlsplit(urls[0]).netloc in appliance_hosts(cluster)
    reader = await asyncio.create_subprocess_exec(
        "ffmpeg", "-nostdin", "-v", "error", "-i", urls[0], "-t", "4", "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(reader.communicate(), 60)
    assert reader.returncode == 0 and not err.strip(), err

    page = await open_player(browser, cluster, title="live")
    try:
        await page.wait_for_function(
            "window.vcdnPlayer.latencies.length >= 8 || window.vcdnPlayer.fatal.length > 0",
            timeout=60_000,
        )
        victim = random.choice(pipelines)
        assert victim.process is not None
        victim.process.kill()  # SIGKILL: the other pipeline's segments carry on
        await page.wait_for_function(
            "window.vcdnPlayer.latencies.length >= 40 || window.vcdnPlayer.fatal.length > 0",
            timeout=60_000,
        )
    except Exception as exc:
        await page.screenshot(path=str(artifacts() / "player-live-failed.png"))
        raise AssertionError(f"live playback: {exc}\n{await page.inner_text('#log')}") from None
    state = await page.evaluate("window.vcdnPlayer")
    assert state["fatal"] == [] and state["live"] is True
    assert state["stalls"] == 0, await page.inner_text("#log")
    assert await page.is_visible("#live")
    assert "behind live" in await page.inner_text("#latency")
    hosts = segment_hosts(page)
    assert hosts and hosts <= appliance_hosts(cluster), hosts
    # The sound is the master playlist's audio group, its own rendition.
    assert any("/live/audio/seg_" in u for u in page.requests), "hls.js fetched no audio"
    latency = statistics.median(state["latencies"])
    (artifacts() / "live-latency.json").write_text(json.dumps(
        {"segment_seconds": 2.0, "p50_s": latency, "samples": state["latencies"]}
    ))
    print(f"live latency p50 {latency:.2f} s over {len(state['latencies'])} samples")
    assert 0 < latency <= LIVE_LATENCY_BOUND_S, state["latencies"]
    await page.screenshot(path=str(artifacts() / "player-live.png"))

    await _appliance_dies(cluster, page)
    await _origin_blinks(cluster, page)
    await page.close()
    await _ffprobe_reads_live_mpd(cluster, "live")
    for player in ("dash", "shaka"):
        await _dash_plays_live(cluster, browser, "live", player)


async def _appliance_dies(cluster: Cluster, page: Any) -> None:
    """SIGKILL the appliance the player is on: it moves to the next URL steering ranked and
    plays on from there, interrupted no longer than the bound."""
    state = await page.evaluate("window.vcdnPlayer")
    playing_on = urlsplit(state["urls"][state["index"]]).netloc
    slot = next(s for s in cluster.slots if s.netloc == playing_on)
    assert slot.proc is not None and slot.proc.process is not None
    seen = len(page.requests)
    slot.proc.process.kill()
    try:
        await page.wait_for_function(
            "(window.vcdnPlayer.failovers >= 1 && window.vcdnPlayer.stalls ==="
            " window.vcdnPlayer.stallSeconds.length && window.vcdnPlayer.playing)"
            " || window.vcdnPlayer.fatal.length > 0",
            timeout=30_000,
        )
        await asyncio.sleep(4)  # and it keeps playing from the next appliance
    except Exception as exc:
        raise AssertionError(f"no failover: {exc}\n{await page.inner_text('#log')}") from None
    state = await page.evaluate("window.vcdnPlayer")
    assert state["fatal"] == [] and state["failovers"] == 1 and state["playing"]
    assert state["urls"][state["index"]] == state["urls"][state["failed"][0] + 1]
    after = {urlsplit(u).netloc for u in page.requests[seen:] if u.endswith(".m4s")}
    assert after and playing_on not in after and after <= appliance_hosts(cluster), after
    longest = max(state["stallSeconds"], default=0.0)
    print(f"failover from {playing_on}: interrupted {longest:.1f} s")
    assert longest <= FAILOVER_STALL_BOUND_S, await page.inner_text("#log")


async def _origin_blinks(cluster: Cluster, page: Any) -> None:
    """The origin is SIGKILLed and started again on the same port (a few seconds away):
    the appliance answers the playlist from what it holds (stale-if-error), the pipeline
    sends what it could not, and the player goes on without an error or another failover
    (it may wait once its buffer runs dry: no new segment exists anywhere meanwhile)."""
    before = await page.evaluate("window.vcdnPlayer")
    assert cluster.origin is not None and cluster.origin.process is not None
    gone = time.monotonic()
    cluster.origin.process.kill()
    await cluster.origin.process.wait()
    await cluster.origin.start()
    await cluster.origin.wait_healthy()
    outage = time.monotonic() - gone
    try:
        await page.wait_for_function(
            f"(window.vcdnPlayer.latencies.length >= {len(before['latencies']) + 12}"
            " && window.vcdnPlayer.stalls === window.vcdnPlayer.stallSeconds.length)"
            " || window.vcdnPlayer.fatal.length > 0",
            timeout=30_000,
        )
    except Exception as exc:
        raise AssertionError(f"after the origin blink: {exc}\n"
                             f"{await page.inner_text('#log')}") from None
    state = await page.evaluate("window.vcdnPlayer")
    assert state["fatal"] == [] and state["failovers"] == before["failovers"], \
        await page.inner_text("#log")
    waited = state["stallSeconds"][len(before["stallSeconds"]):]
    print(f"origin away {outage:.1f} s: the player waited {waited} s")
    assert state["playing"] and sum(waited) <= outage + ORIGIN_BLINK_STALL_BOUND_S


# --- Encrypted titles: packaged against this cluster's control plane (the key service) ---

ENCRYPTED = {"aes-128": "enc-aes", "cenc": "enc-cenc"}


@pytest.fixture(scope="module")
def encrypted_titles(module_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
                     ) -> dict[str, str]:
    """`vcdn package --encrypt` into the cluster's origin, keys to its control plane."""
    cluster = module_cluster
    source = tmp_path_factory.mktemp("enc-source") / "source.mp4"
    asyncio.run(make_sample(source, 8, "426x240", rate=24))
    for scheme, title in ENCRYPTED.items():
        subprocess.run(
            vcdn_argv(
                "package", str(source), "--title", title, "--ladder", "240,144",
                "--segment-seconds", "2", "--origin-root", str(cluster.origin_root),
                "--control", cluster.control_url, "--encrypt", scheme, "-q",
            ),
            check=True, cwd=ROOT, timeout=120,
            env=cluster.env(VCDN_CONTROL_TOKEN=cluster.secrets.packager),
        )
    return ENCRYPTED


async def steered(cluster: Cluster, title: str) -> dict[str, Any]:
    """Steering's playback answer once it has seen the newly registered title."""
    async with aiohttp.ClientSession() as session:
        for _ in range(100):
            async with session.get(f"{cluster.steering_url}/v1/playback/{title}") as resp:
                if resp.status == 200:
                    return await resp.json(content_type=None)
            await asyncio.sleep(0.2)
    raise AssertionError(f"steering never offered {title}")


# hls.js on one URL without retries; resolves with the first fatal error's details.
NO_RETRY_PLAY = """(url) => new Promise((resolve) => {
    const once = { maxTimeToFirstByteMs: 5000, maxLoadTimeMs: 5000, timeoutRetry: null,
                   errorRetry: null };
    const hls = new Hls({ keyLoadPolicy: { default: once } });
    hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) resolve(d.details); });
    hls.loadSource(url);
    hls.attachMedia(document.getElementById("video"));
    setTimeout(() => resolve("no fatal error in 20 s"), 20000);
})"""


# dash.js on one MPD with the given ClearKey licence URL; resolves with its first error.
DASH_LICENCE_PLAY = """([url, licence]) => new Promise((resolve) => {
    const p = dashjs.MediaPlayer().create();
    p.setProtectionData({ "org.w3.clearkey": { serverURL: licence } });
    p.on(dashjs.MediaPlayer.events.ERROR, (e) => resolve(String((e.error || {}).code)));
    p.initialize(document.getElementById("video"), url, true);
    setTimeout(() => resolve("no error in 20 s"), 20000);
})"""


async def ffmpeg_decode(url: str) -> subprocess.CompletedProcess[str]:
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-i", url, "-t", "4", "-f", "null", "-"]
    return await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True,
                                   timeout=60)


def key_uri(text: str) -> str:
    line = next(ln for ln in text.splitlines() if ln.startswith("#EXT-X-KEY:"))
    return line.split('URI="', 1)[1].split('"', 1)[0]


async def test_aes128_title_plays_in_hlsjs_and_only_with_a_valid_token(
    module_cluster: Cluster, browser: Any, encrypted_titles: dict[str, str]
) -> None:
    cluster = module_cluster
    title = encrypted_titles["aes-128"]
    answer = await steered(cluster, title)
    master = answer["urls"][0]
    base = master.rsplit("/", 1)[0]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/240p/index.m3u8") as resp:
            playlist = await resp.text()
        assert "#EXT-X-KEY:METHOD=AES-128" in playlist
        kid = key_uri(playlist).rsplit("/", 1)[1]
        # The appliance sends the key URI, token and all, to the control plane's key service.
        async with session.get(f"{base}/keys/{kid}", allow_redirects=False) as resp:
            assert resp.status == 307
            location = resp.headers["Location"]
        assert location.startswith(f"{cluster.control_url}/k/")
        async with session.get(f"{base}/keys/{kid}") as resp:
            key = await resp.read()
            assert resp.status == 200 and len(key) == 16
        # No token, another title's token, a forged one: 403 and no key, at either door.
        token = urlsplit(master).path.split("/")[2]
        other = urlsplit((await steered(cluster, TITLE))["urls"][0]).path.split("/")[2]
        for url in (f"{cluster.control_url}/k/{other}/{title}/{kid}",
                    f"{cluster.control_url}/k/{token[:-2]}AA/{title}/{kid}",
                    f"{cluster.control_url}/k/{title}/{kid}",
                    base.replace(token, other) + f"/keys/{kid}"):
            async with session.get(url) as resp:
                assert resp.status == 403, url
                assert await resp.read() == b""
    # ffmpeg plays (decrypts) it through the appliance with the key URI; from the origin,
    # where there is no token and no key, it cannot.
    ok = await ffmpeg_decode(master)
    assert ok.returncode == 0 and not ok.stderr.strip(), ok.stderr
    bare = await ffmpeg_decode(f"{cluster.origin_url}/v/{title}/master.m3u8")
    assert "Unable to open key file" in bare.stderr, bare.stderr

    # hls.js in Chromium: the web player plays it, fetching the key through the redirect.
    page = await open_player(browser, cluster, title=title)
    state = await played(page, 3.0)
    assert state["failovers"] == 0
    assert any("/keys/" in u for u in page.requests)
    assert any(u.startswith(f"{cluster.control_url}/k/") for u in page.requests)
    await page.close()

    # No process of the cluster (control, origin, steering, appliances) logged the key.
    forms = [key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
             base64.urlsafe_b64encode(key).rstrip(b"=").decode()]
    for log in cluster.logs.glob("*.log"):
        text = log.read_text(errors="replace")
        assert not any(f in text for f in forms), log

    # hls.js whose key request carries another title's token gets 403 and cannot play.
    page = await browser.new_page()
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if "/keys/" in r.url else None)

    async def wrong_token(route: Any) -> None:
        url = route.request.url
        await route.continue_(url=url.replace(urlsplit(url).path.split("/")[2], other, 1))

    await page.route("**/keys/**", wrong_token)
    await page.goto(f"{cluster.control_url}/static/style.css")  # the control plane's origin
    await page.set_content('<video id="video" muted></video>')
    await page.add_script_tag(url=f"{cluster.control_url}/static/hls.js")
    fatal = await page.evaluate(NO_RETRY_PLAY, master)
    assert "keyLoadError" in fatal, fatal
    assert await page.evaluate("document.getElementById('video').currentTime") == 0
    assert statuses and set(statuses) == {403}, statuses
    await page.close()


@pytest.mark.parametrize("player", ["dash", "shaka"])
async def test_cenc_title_plays_with_clearkey_through_eme_and_not_without_a_license(
    module_cluster: Cluster, browser: Any, encrypted_titles: dict[str, str], player: str
) -> None:
    cluster = module_cluster
    title = encrypted_titles["cenc"]
    answer = await steered(cluster, title)
    async with aiohttp.ClientSession() as session:
        async with session.get(answer["dash"][0]) as resp:
            mpd = await resp.text()
    assert 'value="cenc" cenc:default_KID="' in mpd and "e2719d58-a985-b3c9" in mpd
    page = await open_player(browser, cluster, title=title, protocol=player)
    state = await played(page, 3.0)
    assert state["failovers"] == 0
    licenses = [u for u in page.requests if u.endswith("/keys/clearkey")]
    assert licenses and all("/s/" in u for u in licenses), page.requests
    assert any(u.startswith(f"{cluster.control_url}/k/") for u in page.requests)
    await page.close()
    if player != "dash":
        return
    # dash.js whose licence URL carries another title's token: 403, no key, nothing plays.
    other = urlsplit((await steered(cluster, TITLE))["urls"][0]).path.split("/")[2]
    mpd_url = answer["dash"][0]
    token = urlsplit(mpd_url).path.split("/")[2]
    page = await browser.new_page()
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if "clearkey" in r.url else None)
    await page.goto(f"{cluster.control_url}/static/style.css")  # the control plane's origin
    await page.set_content('<video id="video" muted></video>')
    await page.add_script_tag(url=f"{cluster.control_url}/static/dash.js")
    licence = mpd_url.replace(token, other, 1).rsplit("/", 1)[0] + "/keys/clearkey"
    error = await page.evaluate(DASH_LICENCE_PLAY, [mpd_url, licence])
    assert error != "no error in 20 s", error
    await asyncio.sleep(1.0)  # time to show frames, had any been decrypted
    frames = await page.evaluate(
        "document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames")
    assert frames == 0, frames
    assert 403 in statuses and 200 not in statuses, statuses
    await page.close()


async def _ffprobe_reads_live_mpd(cluster: Cluster, title: str) -> None:
    """ffprobe (ffmpeg's DASH demuxer) reads the dynamic MPD through an appliance: one
    video stream per rendition and the audio."""
    async with aiohttp.ClientSession() as session:
        await wait_live(session, cluster, title, within=30)
    data = await steered(cluster, title)
    mpd = data["dash"][0]
    assert mpd.endswith("/manifest.mpd") and urlsplit(mpd).netloc in appliance_hosts(cluster)
    probe = await asyncio.create_subprocess_exec(
        "ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name",
        "-of", "json", mpd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(probe.communicate(), 60)
    assert probe.returncode == 0, err
    kinds = sorted((s["codec_type"], s["codec_name"]) for s in json.loads(out)["streams"])
    assert kinds == [("audio", "aac"), ("video", "h264"), ("video", "h264")], kinds


async def _dash_plays_live(cluster: Cluster, browser: Any, title: str, player: str) -> None:
    """The origin's dynamic manifest.mpd (same segments as HLS) in dash.js or Shaka Player
    through an appliance: it plays live with its sound (the audio adaptation set), with
    no error, its position is wall-clock time (the epoch timeline) and moves on, and it
    keeps within the MPD's suggested delay plus a few seconds."""
    package = {"dash": "dashjs", "shaka": "shaka-player"}[player]
    if not (ROOT / "node_modules" / package / "dist").exists():
        need(package, "`make install` runs `npm ci`, which installs it into node_modules/")
    page = await open_player(browser, cluster, title=title, protocol=player)
    video = "document.getElementById('video')"
    try:
        await page.wait_for_function(
            f"(window.vcdnPlayer.fragments.length >= 8 && {video}.currentTime > 0)"
            " || window.vcdnPlayer.fatal.length > 0",
            timeout=60_000,
        )
        first = await page.evaluate(f"{video}.currentTime")
        await page.wait_for_function(
            f"{video}.currentTime >= {first + 4} || window.vcdnPlayer.fatal.length > 0",
            timeout=30_000,
        )
    except Exception as exc:
        raise AssertionError(f"{player} live: {exc}\n{await page.inner_text('#log')}\n"
                             f"{page.console[-10:]}") from None
    state = await page.evaluate("window.vcdnPlayer")
    log = await page.inner_text("#log")
    assert state["fatal"] == [] and state["failovers"] == 0, log
    assert "error" not in log.lower(), log
    assert await page.evaluate(f"!{video}.paused && {video}.currentTime > {first}")
    behind = await page.evaluate(f"Date.now() / 1000 - {video}.currentTime")
    print(f"{player} live: {behind:.1f} s behind the wall clock")
    assert 0 < behind <= 3 * 2.0 + 6, behind  # suggestedPresentationDelay, plus slack
    assert sum(state["stallSeconds"]) < 1.0, log
    mpds = [u for u in page.requests if u.endswith(f"/{title}/manifest.mpd")]
    assert len(mpds) >= 2 and all("/s/" in u for u in mpds)  # reloaded: a dynamic MPD
    assert any(f"/{title}/audio/seg_" in u for u in state["fragments"]), state["fragments"]
    assert any(f"/{title}/240p/seg_" in u or f"/{title}/144p/seg_" in u
               for u in state["fragments"])
    hosts = segment_hosts(page)
    assert hosts and hosts <= appliance_hosts(cluster), hosts
    await page.close()
