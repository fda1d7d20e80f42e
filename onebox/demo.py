"""The steps of `vcdn up` after the services start: title, fleet, fill, play, observe.

Each step talks to the services only through their public interfaces (the control API,
the playback API, `vcdn package`, `vcdn appliance-ctl`, `/metrics`, DNS), as an operator
would, so the demo is also a smoke test of those contracts. Each step has a deadline
and fails with a sentence that says which service to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import dns.asyncquery
import dns.exception
import dns.message
from prometheus_client.parser import text_string_to_metric_families

from onebox.cluster import Cluster
from onebox.digtext import dig_text
from onebox.hlsclient import FailoverClient, PlayReport
from onebox.procs import run_to_end, vcdn_argv
from vcdn.errors import VcdnError
from vcdn.schemas import TitleManifest, decode
from vcdn.tokens import parse_keys

DEMO_TITLE: Final = "demo"
DEMO_LADDER: Final = "720,480,360"
FLEET_TIMEOUT: Final = 45.0
FILL_TIMEOUT: Final = 120.0
POLL: Final = 0.25

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class DemoFailed(VcdnError):
    """A step of the demo did not complete."""


# --- title ---


async def make_sample(path: Path, duration: float, size: str = "1280x720", rate: int = 30,
                      log: Path | None = None) -> None:
    """A test-pattern source: testsrc2 video with a 440 Hz tone, quick to encode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    argv = [
        shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
        "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={duration}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration}",
        "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "128k", "-shortest", str(tmp),
    ]
    await run_to_end("sample", argv, log_path=log or path.with_suffix(".log"), within=300)
    tmp.rename(path)


def read_manifest(root: Path, title: str) -> TitleManifest | None:
    path = root / title / "manifest.json"
    if not path.is_file():
        return None
    try:
        return decode(TitleManifest, json.loads(path.read_text()))
    except (ValueError, VcdnError) as exc:
        raise DemoFailed(f"{path} is not a valid title manifest ({exc}); remove it.") from None


async def register(session: aiohttp.ClientSession, cluster: Cluster, title: str) -> None:
    """POST the title's manifest.json to the control API (idempotent: 200 when known)."""
    body = (cluster.origin_root / title / "manifest.json").read_bytes()
    headers = {
        "Authorization": f"Bearer {cluster.secrets.packager}",
        "Content-Type": "application/json",
    }
    async with session.post(
        f"{cluster.control_url}/api/v1/titles", data=body, headers=headers
    ) as resp:
        if resp.status not in (200, 201):
            raise DemoFailed(
                f"The control API refused title registration: {resp.status} {await resp.text()}"
            )


async def ensure_title(
    cluster: Cluster,
    title: str,
    *,
    source: Path | None = None,
    duration: float = 30.0,
    ladder: str = DEMO_LADDER,
    size: str = "1280x720",
    segment_seconds: float = 4.0,
    say: Say = _quiet,
) -> TitleManifest:
    """The title's manifest: packaged now unless the origin already holds it.

    Needs no running service: the packager writes into the origin root, and `register`
    tells the control API afterwards."""
    manifest = read_manifest(cluster.origin_root, title)
    if manifest is None:
        if source is None:
            source = cluster.data / "source" / f"{title}-{int(duration)}s.mp4"
            if not source.is_file():
                say(f"generating a {duration:g} s test-pattern source ({size}, testsrc2 + sine)")
                await make_sample(source, duration, size, log=cluster.logs / "sample.log")
        elif not source.is_file():
            raise DemoFailed(f"Source '{source}' does not exist.")
        say(f"packaging '{title}' (ladder {ladder}; progress in {cluster.logs}/package.log)")
        t0 = time.monotonic()
        await run_to_end(
            "vcdn package",
            vcdn_argv(
                "package", str(source), "--title", title, "--ladder", ladder,
                "--segment-seconds", str(segment_seconds),
                "--origin-root", str(cluster.origin_root), "--preset", "veryfast",
                "--progress-interval", "5",
            ),
            log_path=cluster.logs / "package.log",
            env=cluster.env(),
            within=900,
        )
        manifest = read_manifest(cluster.origin_root, title)
        if manifest is None:
            raise DemoFailed(f"vcdn package wrote no manifest.json for '{title}'.")
        say(f"packaged '{title}' in {time.monotonic() - t0:.1f} s: "
            f"{len(manifest.renditions)} renditions, {len(manifest.files)} files, "
            f"{manifest.total_bytes / 1e6:.1f} MB")
    else:
        say(f"'{title}' is already packaged in {cluster.origin_root / title}")
    return manifest


# --- fleet ---


async def control_get(session: aiohttp.ClientSession, cluster: Cluster, path: str) -> Any:
    headers = {"Authorization": f"Bearer {cluster.secrets.operator}"}
    async with session.get(f"{cluster.control_url}{path}", headers=headers) as resp:
        if resp.status != 200:
            raise DemoFailed(f"GET {path} on the control API answered {resp.status}.")
        return await resp.json()


async def appliance_states(session: aiohttp.ClientSession, cluster: Cluster) -> dict[str, dict]:
    body = await control_get(session, cluster, "/api/v1/appliances")
    return {a["id"]: a for a in body["appliances"]}


async def steering_health(session: aiohttp.ClientSession, cluster: Cluster) -> dict:
    async with session.get(f"{cluster.steering_url}/healthz") as resp:
        return await resp.json()


async def wait_for_fleet(
    session: aiohttp.ClientSession, cluster: Cluster, *, within: float = FLEET_TIMEOUT,
    say: Say = _quiet,
) -> None:
    """Until every appliance is registered and healthy and steering uses all of them."""
    deadline = time.monotonic() + within
    want = {s.id for s in cluster.slots}
    states: dict[str, dict] = {}
    usable = 0
    while time.monotonic() < deadline:
        states = await appliance_states(session, cluster)
        healthy = {i for i, a in states.items() if a["state"] == "healthy"}
        usable = (await steering_health(session, cluster))["view"]["usable_appliances"]
        if want <= healthy and usable >= len(want):
            say(f"all {len(want)} appliances registered, healthy and in steering's view")
            return
        await asyncio.sleep(POLL)
    seen = {i: a.get("state") for i, a in states.items()}
    raise DemoFailed(
        f"The fleet did not come up in {within:.0f} s: control sees {seen or 'no appliance'}, "
        f"steering uses {usable}; see the appliance logs in {cluster.logs}/."
    )


# --- fill ---


async def fill_now(cluster: Cluster, slot_id: str) -> None:
    slot = next(s for s in cluster.slots if s.id == slot_id)
    await run_to_end(
        f"appliance-ctl fill-now {slot.id}",
        vcdn_argv("appliance-ctl", "fill-now", "--appliance", slot.admin_url),
        log_path=cluster.logs / "appliance-ctl.log",
        env=cluster.env(VCDN_OPERATOR_TOKEN=cluster.secrets.admin),
        within=30,
    )


async def planned_holders(
    session: aiohttp.ClientSession, cluster: Cluster, title: str
) -> list[str]:
    """The appliances whose fill manifest lists `title` (the planner's placement)."""
    holders = []
    for slot in cluster.slots:
        path = f"/api/v1/appliances/{slot.id}/fill-manifest"
        manifest = await control_get(session, cluster, path)
        if any(t["title"] == title for t in manifest["titles"]):
            holders.append(slot.id)
    return holders


def signed_url(cluster: Cluster, base: str, title: str, path: str) -> str:
    token = parse_keys(cluster.secrets.signing_keys).sign_current(title, time.time(), 600)
    assert token is not None, "the cluster's signing keys are valid from now on"
    return f"{base}/s/{token}/{title}/{path}"


async def prime_demand(
    session: aiohttp.ClientSession, cluster: Cluster, title: str, *, within: float = 0.0
) -> list[str]:
    """Request the master playlist from every appliance; wait until the plan places it."""
    for slot in cluster.slots:
        async with session.get(signed_url(cluster, slot.url, title, "master.m3u8")) as resp:
            if resp.status != 200:
                raise DemoFailed(f"{slot.id} answered {resp.status} for '{title}' master.m3u8.")
            await resp.read()
    deadline = time.monotonic() + (within or 5 * cluster.config.heartbeat_interval + 5)
    while time.monotonic() < deadline:
        holders = await planned_holders(session, cluster, title)
        if holders:
            return holders
        await asyncio.sleep(POLL)
    raise DemoFailed(
        f"No appliance's fill manifest lists '{title}' although every appliance was asked "
        "for it; see the control log."
    )


async def cached_bytes(session: aiohttp.ClientSession, url: str) -> float:
    metrics = await scrape(session, url)
    return metrics.get("vcdn_edge_cache_bytes", 0.0)


async def fill_title(
    session: aiohttp.ClientSession, cluster: Cluster, manifest: TitleManifest, *,
    within: float = FILL_TIMEOUT, say: Say = _quiet,
) -> list[str]:
    """Ask every appliance to fill now; wait until those planned to hold the title do."""
    holders = await planned_holders(session, cluster, manifest.title)
    if not holders:
        # The planner places titles by demand, which comes from the appliances' heartbeats;
        # a title nobody asked for yet is not placed. One request per appliance is the
        # first viewer's demand.
        say(f"no demand recorded for '{manifest.title}' yet: asking each appliance for its "
            "master playlist once")
        holders = await prime_demand(session, cluster, manifest.title)
    await asyncio.gather(*(fill_now(cluster, s.id) for s in cluster.slots))
    say(f"fill-now sent; the fill plan places '{manifest.title}' on {', '.join(holders)}")
    deadline = time.monotonic() + within
    slots = {s.id: s for s in cluster.slots}
    pending = set(holders)
    t0 = time.monotonic()
    while pending and time.monotonic() < deadline:
        for aid in sorted(pending):
            if await cached_bytes(session, slots[aid].url) >= manifest.total_bytes:
                pending.discard(aid)
        if pending:
            await asyncio.sleep(POLL)
    if pending:
        raise DemoFailed(
            f"{', '.join(sorted(pending))} did not fill '{manifest.title}' "
            f"({manifest.total_bytes} bytes) in {within:.0f} s; see their logs in {cluster.logs}/."
        )
    say(f"filled {manifest.total_bytes / 1e6:.1f} MB on {len(holders)} appliance(s) "
        f"in {time.monotonic() - t0:.1f} s")
    return holders


# --- play ---


@dataclass
class PlayOutcome:
    urls: list[str]
    first_appliance: str
    ffmpeg_ok: bool
    ffmpeg_seconds: float
    ffmpeg_error: str
    report: PlayReport
    served_by: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.ffmpeg_ok and self.report.ok and bool(self.report.segments)

    def as_dict(self) -> dict[str, Any]:
        r = self.report
        return {
            "ok": self.ok,
            "urls": self.urls,
            "first_appliance": self.first_appliance,
            "ffmpeg_ok": self.ffmpeg_ok,
            "ffmpeg_seconds": round(self.ffmpeg_seconds, 2),
            "ffmpeg_error": self.ffmpeg_error,
            "rendition": r.variant,
            "segments": len(r.segments),
            "bytes": sum(f.size for f in r.fetches),
            "failovers": r.failovers,
            "failed": r.failed,
            "by_appliance": {
                self.served_by.get(server, server): {
                    "segments": sum(1 for f in r.segments if f.server == server),
                    "bytes": sum(f.size for f in r.fetches if f.server == server),
                }
                for server in r.bytes_by_server
            },
        }


async def playback_urls(session: aiohttp.ClientSession, steering_url: str, title: str) -> list[str]:
    async with session.get(f"{steering_url}/v1/playback/{title}") as resp:
        body = await resp.json(content_type=None)
        if resp.status != 200:
            raise DemoFailed(f"Steering answered {resp.status} for '{title}': {body}")
    urls = body.get("urls") or []
    if not urls:
        raise DemoFailed(f"Steering returned no URL for '{title}'.")
    return list(urls)


async def wait_live(
    session: aiohttp.ClientSession, cluster: Cluster, title: str, *, within: float = 60.0,
    segments: int = 3, say: Say = _quiet,
) -> list[str]:
    """Until steering hands out URLs for the live event and its playlist through the first
    of them lists `segments` segments; returns the URLs."""
    deadline = time.monotonic() + within
    last = ""
    while time.monotonic() < deadline:
        try:
            urls = await playback_urls(session, cluster.steering_url, title)
            media = urls[0].rsplit("/", 1)[0] + "/"
            async with session.get(urls[0]) as resp:
                master = await resp.text()
            variant = next(ln for ln in master.splitlines() if ln and not ln.startswith("#"))
            async with session.get(media + variant) as resp:
                if resp.status == 200 and (await resp.text()).count("#EXTINF") >= segments:
                    say(f"live event '{title}' is on the air")
                    return urls
        except (DemoFailed, aiohttp.ClientError, StopIteration, TimeoutError) as exc:
            last = str(exc)
        await asyncio.sleep(0.5)
    raise DemoFailed(f"The live event '{title}' did not come up within {within:g} s ({last}); "
                     f"see {cluster.logs}/live-{title}.log")


async def ffmpeg_read(url: str, within: float = 120.0) -> tuple[bool, float, str]:
    """Read the master playlist's first video rendition to the end, as a player would."""
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
        "-i", url, "-map", "0:v:0", "-c", "copy", "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False, time.monotonic() - t0, f"ffmpeg took longer than {within:.0f} s"
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    text = err.decode(errors="replace").strip()
    return proc.returncode == 0, time.monotonic() - t0, text[-500:]


async def play_title(
    session: aiohttp.ClientSession, cluster: Cluster, manifest: TitleManifest, *,
    say: Say = _quiet,
) -> PlayOutcome:
    urls = await playback_urls(session, cluster.steering_url, manifest.title)
    served_by = {s.netloc: s.id for s in cluster.slots}
    served_by.update({f"{s.host}:{s.tls_port}": s.id for s in cluster.slots if s.tls_port})
    served_by[urlsplit(cluster.origin_url).netloc] = "origin"
    first = served_by.get(urlsplit(urls[0]).netloc, urlsplit(urls[0]).netloc)
    say(f"steering ranked {len(urls)} URLs; playing the first, on {first}")
    ok, seconds, error = await ffmpeg_read(urls[0])
    say(f"ffmpeg read the master playlist and a whole rendition in {seconds:.1f} s"
        if ok else f"ffmpeg failed: {error}")
    expected = {f.path: f.sha256 for f in manifest.files}

    async def ask_again() -> list[str]:
        return await playback_urls(session, cluster.steering_url, manifest.title)

    client = FailoverClient(session, urls, expected=expected, refresh=ask_again)
    report = await client.play()
    return PlayOutcome(urls, first, ok, seconds, error, report, served_by)


# --- observe ---


async def scrape(session: aiohttp.ClientSession, base_url: str) -> dict[str, float]:
    """A service's /metrics as {"name{label=value}": value}, plus per-name sums."""
    try:
        async with session.get(f"{base_url}/metrics", timeout=aiohttp.ClientTimeout(total=3)) as r:
            text = await r.text()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
            if labels:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


_RESULT_RE: Final = re.compile(r"^vcdn_edge_requests_total\{result=(\w+)\}$")


async def scrape_appliances(session: aiohttp.ClientSession, cluster: Cluster) -> list[dict]:
    """Per appliance: requests by result, bytes sent, cache use, and the control's view."""
    try:
        views = await appliance_states(session, cluster)
    except (VcdnError, aiohttp.ClientError):
        views = {}
    out = []
    for slot in cluster.slots:
        # The admin API's /metrics (local monitoring; HTTPS with --tls, verified by
        # `session`): the same registry the video listeners count in.
        m = await scrape(session, slot.admin_url)
        results = {
            match.group(1): int(v) for k, v in m.items() if (match := _RESULT_RE.match(k))
        }
        hits, misses = results.get("hit", 0), results.get("miss", 0)
        view = views.get(slot.id, {})
        out.append({
            "id": slot.id,
            "site": slot.site,
            "url": slot.url,
            "state": view.get("state", "unknown"),
            "requests": results,
            "sent_bytes": int(m.get("vcdn_edge_sent_bytes_total", 0)),
            "fill_bytes": int(m.get("vcdn_edge_fill_bytes_total", 0)
                              + m.get("vcdn_appliance_fill_bytes_total", 0)),
            "cache_bytes": int(m.get("vcdn_edge_cache_bytes", 0)),
            "hit_ratio": round(hits / (hits + misses), 3) if hits + misses else None,
        })
    return out


async def dns_answer(cluster: Cluster, name: str, rdtype: str = "A") -> str:
    """Ask steering's DNS for `name` over UDP and render the answer as dig does."""
    query = dns.message.make_query(name, rdtype, use_edns=0)
    t0 = time.monotonic()
    try:
        response = await dns.asyncquery.udp(
            query, cluster.config.host, port=cluster.steering_dns_port, timeout=3
        )
    except (TimeoutError, OSError, dns.exception.DNSException) as exc:
        return f";; no answer from {cluster.config.host}#{cluster.steering_dns_port}: {exc}"
    return dig_text(
        response, server=cluster.config.host, port=cluster.steering_dns_port,
        query=name, rdtype=rdtype, elapsed_ms=(time.monotonic() - t0) * 1000,
    )
