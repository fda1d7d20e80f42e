"""`python -m bench.live`: N simulated live players on one edge, following the live edge.

A real `vcdn live` pipeline (lavfi test pattern, paced at real time) PUTs to an origin
run in this process, so every request the origin answers is counted by path; a real
`vcdn edge` process (appliance mode, ``--auth none``) sits in front; N player tasks on
one event loop each reload the lowest rendition's playlist every target duration
(RFC 8216 §6.3.4; half of it when unchanged), and fetch every new segment from where they
joined (three segments behind the edge, as players start) to the end of the run.

Printed and recorded: failed player requests, segments a player missed (and players whose
segments do not cover every one from where they joined to the newest their last playlist
named), origin requests per segment (coalescing says exactly 1) and per playlist version
(each version one 200, no 304: exactly 1), p50/p99 of playlist and
segment responses at the players, and how far behind real time the newest segment a
player saw was (now minus its program date time plus duration). Bounded: `--seconds` of
play, every request under a timeout, loopback only.

    python -m bench.live --players 300 --seconds 60              # the issue's run
    python -m bench.live --players 20 --seconds 8 --segment-seconds 1 --no-record  # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

from bench.record import Run
from onebox.procs import free_port
from origin.content.app import make_app as make_origin
from origin.content.settings import OriginSettings

REPO: Final = Path(__file__).resolve().parents[2]
TOKEN: Final = "bench-live-token"
TITLE: Final = "live"
RENDITION: Final = "90p"
REQUEST_TIMEOUT_S: Final = 10.0
SEG_RE: Final = re.compile(r"^seg_(\d+)\.m4s$")


@dataclass
class Stats:
    playlist_ms: list[float] = field(default_factory=list)
    segment_ms: list[float] = field(default_factory=list)
    behind_s: list[float] = field(default_factory=list)
    failures: int = 0
    missed: int = 0
    fetched: int = 0
    #: Players whose segments do not cover every MSN from where they joined to the newest
    #: one their last playlist named.
    incomplete_players: int = 0


def parse(text: str) -> tuple[float, list[tuple[int, float, float]]]:
    """(target duration, [(msn, pdt seconds, duration)]) of a live media playlist."""
    target, out, when, dur = 1.0, [], 0.0, 0.0
    for line in text.splitlines():
        if line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            when = datetime.fromisoformat(line.split(":", 1)[1].replace("Z", "+00:00")).timestamp()
        elif line.startswith("#EXTINF:"):
            dur = float(line[8:].split(",")[0])
        elif m := SEG_RE.match(line):
            out.append((int(m.group(1)), when, dur))
    return target, out


async def player(
    session: aiohttp.ClientSession, base: str, deadline: float, stats: Stats
) -> None:
    playlist_url = f"{base}/v/{TITLE}/{RENDITION}/index.m3u8"
    await asyncio.sleep(random.uniform(0, 1.0))
    next_msn: int | None = None
    first_msn: int | None = None
    newest_seen = -1
    got: set[int] = set()
    last_text = ""
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            async with session.get(playlist_url) as resp:
                text = await resp.text()
                ok = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok, text = False, ""
        stats.playlist_ms.append((time.monotonic() - started) * 1000)
        if not ok:
            stats.failures += 1
            await asyncio.sleep(0.5)
            continue
        target, segs = parse(text)
        if segs:
            _, when, dur = segs[-1]
            stats.behind_s.append(time.time() - (when + dur))
            if next_msn is None:
                next_msn = first_msn = segs[max(0, len(segs) - 3)][0]
            have = {s[0] for s in segs}
            newest_seen = max(newest_seen, segs[-1][0])
            if next_msn < segs[0][0]:
                stats.missed += segs[0][0] - next_msn  # fell out of the window unfetched
                next_msn = segs[0][0]
            while next_msn in have:
                url = f"{base}/v/{TITLE}/{RENDITION}/seg_{next_msn}.m4s"
                if await fetch_segment(session, url, stats):
                    got.add(next_msn)
                next_msn += 1
        # RFC 8216 §6.3.4: reload after the target duration, half of it if unchanged.
        wait = target if text != last_text else target / 2
        last_text = text
        await asyncio.sleep(max(0.0, wait - (time.monotonic() - started)))
    if first_msn is None or not got.issuperset(range(first_msn, newest_seen + 1)):
        stats.incomplete_players += 1


async def fetch_segment(session: aiohttp.ClientSession, url: str, stats: Stats) -> bool:
    started = time.monotonic()
    try:
        async with session.get(url) as resp:
            await resp.read()
            ok = resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        ok = False
    stats.segment_ms.append((time.monotonic() - started) * 1000)
    if ok:
        stats.fetched += 1
    else:
        stats.failures += 1
    return ok


def counting_origin(root: Path) -> tuple[web.Application, Counter[str], Counter[str]]:
    """The origin, counting every GET by path, and every playlist answer by what it was:
    the ETag of a 200 (one version of the playlist) or ``304``."""
    counts: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    app = make_origin(OriginSettings(
        root=root, ingest_token_sha256=(hashlib.sha256(TOKEN.encode()).hexdigest(),),
        log_level="warning",
    ))

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method != "GET":
            return await handler(request)
        counts[request.path] += 1
        resp = await handler(request)
        if request.path.endswith("/index.m3u8"):
            versions["304" if resp.status == 304 else resp.headers.get("ETag", "?")] += 1
        return resp

    app.middlewares.insert(0, count)
    return app, counts, versions


def spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(players: int, seconds: float, seg: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vcdn-bench-live."))
    root = work / "origin"
    root.mkdir()
    app, counts, versions = counting_origin(root)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    origin_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", origin_port).start()
    origin = f"http://127.0.0.1:{origin_port}"
    edge_port = free_port()
    env = {**os.environ, "VCDN_INGEST_TOKEN": TOKEN}
    edge = spawn(
        [sys.executable, "-m", "vcdn.cli", "edge", "--cache-dir", str(work / "cache"),
         "--capacity", "1GiB", "--upstream", origin, "--port", str(edge_port), "--auth", "none",
         "--log-level", "warning"],
        env,
    )
    pipeline = spawn(
        [sys.executable, "-m", "vcdn.cli", "live", "lavfi:testsrc2=size=160x90:rate=30",
         "--title", TITLE, "--origin", origin, "--ladder", "90", "--segment-seconds", str(seg),
         "--window", str(max(10.0, 6 * seg)), "--preset", "ultrafast", "--quiet"],
        env,
    )
    stats = Stats()
    try:
        playlist = root / TITLE / RENDITION / "index.m3u8"
        for _ in range(400):  # 40 s at most for the pipeline's first segments
            if playlist.exists() and parse(playlist.read_text())[1][2:]:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the live pipeline published nothing within 40 s")
        before_msns = {m for m, _, _ in parse(playlist.read_text())[1]}
        counts.clear()
        versions.clear()
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        base = f"http://127.0.0.1:{edge_port}"
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            deadline = time.monotonic() + seconds
            # Bounded: each request has a timeout, and the whole run one more.
            await asyncio.wait_for(
                asyncio.gather(*(player(session, base, deadline, stats) for _ in range(players))),
                seconds + 4 * REQUEST_TIMEOUT_S,
            )
        kept = sorted(m for m, _, _ in parse(playlist.read_text())[1])
    finally:
        for proc in (pipeline, edge):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        await runner.cleanup()
    prefix = f"/v/{TITLE}/{RENDITION}/"
    seg_counts = {p: n for p, n in counts.items() if SEG_RE.match(p.removeprefix(prefix))}
    # Every segment published while the players ran (the window may have dropped some).
    new_segments = list(range(max(before_msns) + 1, max(kept) + 1))
    fetched_new = [seg_counts.get(f"{prefix}seg_{m}.m4s", 0) for m in new_segments]
    served = {tag: n for tag, n in versions.items() if tag != "304"}
    asked = list(fetched_new)
    while asked and asked[-1] == 0:
        asked.pop()
    return {
        "players": players,
        "seconds": seconds,
        "segment_seconds": seg,
        "failures": stats.failures,
        "missed": stats.missed,
        "incomplete_players": stats.incomplete_players,
        "segments_fetched": stats.fetched,
        "origin_requests_per_segment_max": max(seg_counts.values(), default=0),
        "origin_requests_per_new_segment": fetched_new,
        # Exactly one upstream request per segment (the newest ones may have been published
        # after every player's last playlist, hence trailing 0s).
        "one_request_per_segment": bool(asked) and all(n == 1 for n in asked),
        "origin_playlist_requests": counts.get(f"{prefix}index.m3u8", 0),
        "playlist_versions": len(served),
        "playlist_requests_per_version": counts.get(f"{prefix}index.m3u8", 0)
        / max(1, len(served)),
        "playlist_requests_per_version_max": max(served.values(), default=0),
        "playlist_revalidations_304": versions.get("304", 0),
        "playlist_p50": pct(stats.playlist_ms, 0.5),
        "playlist_p99": pct(stats.playlist_ms, 0.99),
        "segment_p50": pct(stats.segment_ms, 0.5),
        "segment_p99": pct(stats.segment_ms, 0.99),
        "behind_p50_s": statistics.median(stats.behind_s) if stats.behind_s else 0.0,
        "playlist_ms": stats.playlist_ms,
        "segment_ms": stats.segment_ms,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__)
    p.add_argument("--players", type=int, default=300)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--segment-seconds", type=float, default=2.0)
    p.add_argument("--record", metavar="NAME", default="live",
                   help="write bench/results/NAME.json and .md (default live)")
    p.add_argument("--no-record", action="store_true", help="print only")
    args = p.parse_args(argv)
    if not 1 <= args.players <= 5000 or not 1 <= args.seconds <= 600:
        p.error("--players must be 1..5000 and --seconds 1..600")
    result = asyncio.run(run(args.players, args.seconds, args.segment_seconds))
    summary = {k: v for k, v in result.items() if not k.endswith("_ms")}
    for key, value in summary.items():
        print(f"{key}: {value if not isinstance(value, float) else round(value, 3)}")
    exact = exactly_one(result)
    errors = result["failures"] + result["missed"] + result["incomplete_players"]
    print(f"every player every segment, 0 failed, exactly 1 upstream request per segment "
          f"and playlist version: {'yes' if exact and not errors else 'NO'}")
    if not args.no_record:
        run_ = Run(args.record, settings={"players": args.players, "seconds": args.seconds,
                                          "segment_seconds": args.segment_seconds})
        run_.case(
            "live_players", ours={"playlist_ms": result["playlist_ms"],
                                  "segment_ms": result["segment_ms"]},
            errors=errors, correct=exact, unit="ms",
            notes=f"{args.players} players, {args.seconds:g} s, {args.segment_seconds:g} s "
                  "segments, one edge",
            **{k: v for k, v in summary.items() if k not in ("players", "seconds")},
        )
        counts = [n for n in result["origin_requests_per_new_segment"] if n]
        run_.case(
            "live_origin_requests",
            ours={"per_playlist_version": [result["playlist_requests_per_version"]],
                  "per_segment": counts or [0]},
            target_of="per_playlist_version", target="<= 1",
            errors=errors, correct=exact, unit="requests",
            notes="origin GETs per playlist version and per segment, one edge (issue: exactly 1)",
        )
        run_.save()
    return 0 if exact and not errors else 1


def exactly_one(result: dict[str, Any]) -> bool:
    """The issue's target: one upstream request per segment and per playlist version (no
    version asked twice, no revalidation answered 304)."""
    return (
        result["one_request_per_segment"]
        and result["origin_requests_per_segment_max"] == 1
        and result["playlist_requests_per_version_max"] == 1
        and result["playlist_revalidations_304"] == 0
    )


if __name__ == "__main__":
    sys.exit(main())
