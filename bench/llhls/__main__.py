"""`python -m bench.llhls`: N simulated low-latency HLS players on one edge.

A real `vcdn live --low-latency` pipeline (lavfi test pattern, paced at real time) PUTs
its parts and segments to an origin run in this process, which notes when each part is
whole and counts every GET by path and query; a real `vcdn edge` process (appliance mode,
``--auth none``, two workers) sits in front. Each player does what hls.js does in
lowLatencyMode: one non-blocking playlist load, then, in a loop, a blocking reload for the
part after the newest it has (``_HLS_msn=M&_HLS_part=P+1``) while it fetches the
preload-hinted part, streamed, as soon as the hint names it.

Printed and recorded: failed requests; origin requests per blocking playlist key
(playlist, msn, part, skip) and per part (the issue's target: at most 1 per appliance);
how long after the upstream's answer (the part's arrival) reached the edge each waiting
player's blocking answer left it, as the edge itself measures it
(`vcdn_edge_blocking_answer_seconds`, summed over its workers; the issue's target: p99
<= 50 ms; a bucket's upper bound, so "at most"); how many answers the edge serialised per
part; CPU time per part of the edge, the players, the origin and the pipeline (figures a
loaded machine does not distort the way it does wall-clock delays); and, end to end, how
long after a part was whole at the origin the answer naming it reached a player that was
waiting for it (this includes the players' own processes, on the same cores as the edge:
the load generator is the largest CPU user of the run), and the hinted part's first byte.
Bounded: `--seconds` of play, every request under a timeout, loopback only. The players
run in `--player-processes` processes of their own (not in the origin's event loop), on
uvloop with a minimal keep-alive HTTP/1.1 client (`bench.llhls.rawhttp`: about 100 us of
CPU per request where aiohttp's client took about 250); times are compared on the wall
clock of this one machine.

    python -m bench.llhls --players 300 --seconds 60          # the issue's run
    python -m bench.llhls --players 30 --seconds 10 --no-record  # smoke
    python -m bench.llhls --seconds 15 --no-record --edge-nice -10  # on a shared machine
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

from bench.llhls.rawhttp import Client, HttpError
from bench.procstat import cpu_seconds
from bench.record import Run
from onebox.procs import free_port
from origin.content.app import make_app as make_origin
from origin.content.settings import OriginSettings

REPO: Final = Path(__file__).resolve().parents[2]
TOKEN: Final = "bench-llhls-token"
TITLE: Final = "ll"
RENDITION: Final = "90p"
REQUEST_TIMEOUT_S: Final = 10.0
PART_RE: Final = re.compile(r'#EXT-X-PART:[^\n]*URI="part_(\d+)_(\d+)\.m4s"')
HINT_RE: Final = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(part_(\d+)_(\d+)\.m4s)"')


@dataclass
class Stats:
    #: (msn, part, sent, received): the newest part of each blocking answer, wall clock.
    answers: list[tuple[int, int, float, float]] = field(default_factory=list)
    hint_first_byte_ms: list[float] = field(default_factory=list)
    playlists: int = 0
    parts: int = 0
    failures: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # of failed requests
    cpu_s: float = 0.0  # CPU time the player processes used


def newest_part(text: str) -> tuple[int, int] | None:
    found = PART_RE.findall(text)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


async def fetch_part(client: Client, target: str, stats: Stats) -> None:
    started = time.monotonic()

    def first() -> None:
        stats.hint_first_byte_ms.append((time.monotonic() - started) * 1000)

    try:
        status_code, _ = await client.get(target, first)
        ok, status = status_code == 200, f"part {status_code}"
    except HttpError:
        ok, status = False, "part error"
    if ok:
        stats.parts += 1
    else:
        stats.failures += 1
        stats.statuses[status] += 1


async def player(base: str, deadline: float, stats: Stats) -> None:
    host, _, port = base.removeprefix("http://").partition(":")
    client = Client(host, int(port), REQUEST_TIMEOUT_S)
    playlist = f"/v/{TITLE}/{RENDITION}/index.m3u8"
    await asyncio.sleep(random.uniform(0, 1.0))
    query = ""
    fetching: set[str] = set()
    tasks: list[asyncio.Task[None]] = []
    while time.monotonic() < deadline:
        sent = time.time()
        try:
            status, body = await client.get(playlist + query)
        except HttpError:
            status, body = 0, b""
        received = time.time()
        if status != 200:
            stats.failures += 1
            stats.statuses[f"playlist {status or 'error'}"] += 1
            query = ""
            await asyncio.sleep(0.3)
            continue
        text = body.decode()
        stats.playlists += 1
        newest = newest_part(text)
        if newest is None:
            await asyncio.sleep(0.3)
            continue
        if query:
            stats.answers.append((newest[0], newest[1], sent, received))
        hint = HINT_RE.search(text)
        if hint and hint.group(1) not in fetching:
            fetching.add(hint.group(1))
            target = f"/v/{TITLE}/{RENDITION}/{hint.group(1)}"
            tasks.append(asyncio.create_task(fetch_part(client, target, stats)))
        query = f"?_HLS_msn={newest[0]}&_HLS_part={newest[1] + 1}"
    await asyncio.gather(*tasks, return_exceptions=True)
    client.close()


def counting_origin(root: Path) -> tuple[web.Application, Counter[str], dict[tuple[int, int],
                                                                              float]]:
    counts: Counter[str] = Counter()
    done_at: dict[tuple[int, int], float] = {}
    app = make_origin(OriginSettings(
        root=root, ingest_token_sha256=(hashlib.sha256(TOKEN.encode()).hexdigest(),),
        log_level="warning",
    ))
    prefix = f"/v/{TITLE}/{RENDITION}/part_"

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "GET":
            counts[request.path_qs] += 1
        resp = await handler(request)
        if request.method == "PUT" and request.path.startswith(prefix) and resp.status == 201:
            msn, _, part = request.path[len(prefix):].removesuffix(".m4s").partition("_")
            done_at[(int(msn), int(part))] = time.time()
        return resp

    app.middlewares.insert(0, count)
    return app, counts, done_at


BLOCKING_METRIC: Final = "vcdn_edge_blocking_answer_seconds"
RENDERS_METRIC: Final = "vcdn_edge_blocking_renders_total"


async def blocking_metrics(session: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """The edge's own account of its blocking answers (summed over its workers): the
    cumulative histogram of how long after the upstream's answer arrived each waiting
    player's answer was handed to its connection, and how many answers it serialised."""
    async with session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    buckets: dict[float, float] = {}
    renders = 0.0
    for line in text.splitlines():
        if line.startswith(BLOCKING_METRIC + "_bucket{"):
            le = line.partition('le="')[2].partition('"')[0]
            buckets[float(le)] = float(line.rpartition(" ")[2])
        elif line.startswith(RENDERS_METRIC + " "):
            renders = float(line.rpartition(" ")[2])
    return {"buckets": buckets, "renders": renders,
            "answers": buckets.get(float("inf"), 0.0)}


def blocking_metrics_delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    buckets = {le: n - before["buckets"].get(le, 0.0) for le, n in after["buckets"].items()}
    return {"buckets": buckets, "renders": after["renders"] - before["renders"],
            "answers": after["answers"] - before["answers"]}


def bucket_quantile(buckets: dict[float, float], q: float) -> float:
    """The upper bound of the histogram bucket that holds quantile `q` (seconds)."""
    total = buckets.get(float("inf"), 0.0)
    if total <= 0:
        return 0.0
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le
    return float("inf")


def spawn(
    argv: list[str], env: dict[str, str], log: Path, nice: int = 0
) -> subprocess.Popen[bytes]:
    """A server of the run; its stderr (warnings and errors only) goes to `log`. With
    `nice`, it (and the workers it forks) runs at that scheduling priority."""

    def priority() -> None:
        os.setpriority(os.PRIO_PROCESS, 0, nice)

    with log.open("wb") as err:
        return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, env=env,
                                preexec_fn=priority if nice else None)


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def players_here(base: str, players: int, seconds: float) -> Stats:
    stats = Stats()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(player(base, deadline, stats) for _ in range(players)))
    return stats


async def drive_players(base: str, players: int, seconds: float, procs: int,
                        stats: Stats) -> None:
    """`players` players in `procs` processes of their own, so that they do not share the
    origin's event loop; each reports its samples as JSON."""
    shares = [players // procs + (i < players % procs) for i in range(procs)]
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.llhls", "--players-only", base, "--players", str(n),
            "--seconds", str(seconds), cwd=REPO, stdout=asyncio.subprocess.PIPE,
        )
        for n in shares if n
    ]
    for child in children:
        out, _ = await asyncio.wait_for(child.communicate(), seconds + 60)
        part = json.loads(out)
        stats.answers += [tuple(a) for a in part["answers"]]  # type: ignore[misc]
        stats.hint_first_byte_ms += part["hint_first_byte_ms"]
        stats.playlists += part["playlists"]
        stats.parts += part["parts"]
        stats.failures += part["failures"] + (child.returncode != 0)
        stats.statuses.update(part["statuses"])
        stats.cpu_s += part.get("cpu_s", 0.0)


async def run(players: int, seconds: float, workers: int, procs: int,
              edge_nice: int = 0) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="vcdn-bench-llhls."))
    root = work / "origin"
    root.mkdir()
    app, counts, done_at = counting_origin(root)
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
         "--workers", str(workers), "--log-level", "warning", "--mode", "appliance"],
        env, work / "edge.log", edge_nice,
    )
    pipeline = spawn(
        [sys.executable, "-m", "vcdn.cli", "live", "lavfi:testsrc2=size=160x90:rate=30",
         "--title", TITLE, "--origin", origin, "--ladder", "90", "--segment-seconds", "2",
         "--window", "20", "--preset", "ultrafast", "--low-latency", "--quiet"],
        env, work / "pipeline.log",
    )
    stats = Stats()
    base = f"http://127.0.0.1:{edge_port}"
    answer_ms: list[float] = []
    try:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for _ in range(400):  # 40 s at most for the first parts through the edge
                try:
                    async with session.get(f"{base}/v/{TITLE}/{RENDITION}/index.m3u8") as r:
                        if r.status == 200 and newest_part(await r.text()):
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("no parts through the edge within 40 s")
            counts.clear()
            cpu_before = {"edge": cpu_seconds(edge.pid), "pipeline": cpu_seconds(pipeline.pid),
                          "origin": time.process_time()}
            scraped_before = await blocking_metrics(session, base)
            await drive_players(base, players, seconds, procs, stats)
            cpu = {"edge": cpu_seconds(edge.pid) - cpu_before["edge"],
                   "pipeline": cpu_seconds(pipeline.pid) - cpu_before["pipeline"],
                   "origin": time.process_time() - cpu_before["origin"],
                   "players": stats.cpu_s}
            scraped = blocking_metrics_delta(await blocking_metrics(session, base),
                                             scraped_before)
    finally:
        for proc in (pipeline, edge):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        await runner.cleanup()
    # Only answers that waited for their part (asked before it was whole) say how fast a
    # blocking answer follows the part; a late player's is a plain hit.
    for msn, part, sent, received in stats.answers:
        done = done_at.get((msn, part))
        if done is not None and sent < done:
            answer_ms.append((received - done) * 1000)
    playlist = f"/v/{TITLE}/{RENDITION}/index.m3u8"
    blocking = {k: n for k, n in counts.items() if k.startswith(playlist + "?")}
    parts = {k: n for k, n in counts.items() if "/part_" in k}
    parts_made = max(1, len(parts))
    edge_answers = scraped["answers"]
    return {
        "logs": str(work),
        "edge_nice": edge_nice,
        "edge_answer_p50_ms_at_most": bucket_quantile(scraped["buckets"], 0.5) * 1000,
        "edge_answer_p99_ms_at_most": bucket_quantile(scraped["buckets"], 0.99) * 1000,
        "edge_blocking_answers": edge_answers,
        "edge_renders_per_part": scraped["renders"] / parts_made,
        "edge_waiters_per_render": edge_answers / max(1.0, scraped["renders"]),
        "cpu_ms_per_part": {k: round(v * 1000 / parts_made, 2) for k, v in cpu.items()},
        "edge_cpu_us_per_blocking_answer": cpu["edge"] * 1e6 / max(1.0, edge_answers),
        # Per request served (a blocking answer or a part): comparable between runs in
        # which a different share of the players kept up with the live edge.
        "cpu_us_per_request": {
            k: round(v * 1e6 / max(1, stats.playlists + stats.parts), 1) for k, v in cpu.items()
        },
        "players": players,
        "seconds": seconds,
        "edge_workers": workers,
        "failures": stats.failures,
        "failed_by_status": dict(stats.statuses),
        "playlists_answered": stats.playlists,
        "parts_fetched": stats.parts,
        "blocking_keys": len(blocking),
        "origin_requests_per_blocking_key_max": max(blocking.values(), default=0),
        "origin_requests_per_blocking_key_mean": (
            sum(blocking.values()) / len(blocking) if blocking else 0.0
        ),
        "origin_requests_per_part_max": max(parts.values(), default=0),
        "origin_nonblocking_playlist_requests": counts.get(playlist, 0),
        "player_processes": procs,
        "answers_measured": len(answer_ms),
        "answer_after_part_p50_ms": pct(answer_ms, 0.5),
        "answer_after_part_p99_ms": pct(answer_ms, 0.99),
        "hint_first_byte_p50_ms": pct(stats.hint_first_byte_ms, 0.5),
        "answer_ms": answer_ms,
        "hint_first_byte_ms": stats.hint_first_byte_ms,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.llhls", description=__doc__)
    p.add_argument("--players", type=int, default=300)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--workers", type=int, default=2, help="edge worker processes (default 2)")
    p.add_argument("--record", metavar="NAME", default="llhls",
                   help="write bench/results/NAME.json and .md (default llhls)")
    p.add_argument("--player-processes", type=int, default=2,
                   help="processes the players run in (default 2)")
    p.add_argument("--edge-nice", type=int, default=0, metavar="N",
                   help="run the edge at nice N (negative needs root): on a machine shared "
                        "with other work, the edge's own delays without its preemption; "
                        "the players, origin and pipeline keep their priority")
    p.add_argument("--no-record", action="store_true", help="print only")
    p.add_argument("--players-only", metavar="BASE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.players_only:  # a child of drive_players: play, print the samples
        # uvloop, as the edge runs: the players are the run's largest CPU user, on the
        # same cores as the edge they measure.
        import uvloop

        started_cpu = time.process_time()  # not the interpreter's start-up and imports
        stats = uvloop.run(players_here(args.players_only, args.players, args.seconds))
        print(json.dumps({
            "answers": stats.answers, "hint_first_byte_ms": stats.hint_first_byte_ms,
            "playlists": stats.playlists, "parts": stats.parts, "failures": stats.failures,
            "statuses": dict(stats.statuses), "cpu_s": time.process_time() - started_cpu,
        }))
        return 0
    if not 1 <= args.players <= 5000 or not 1 <= args.seconds <= 600 or not 1 <= args.workers <= 8:
        p.error("--players must be 1..5000, --seconds 1..600 and --workers 1..8")
    result = asyncio.run(run(args.players, args.seconds, args.workers,
                             max(1, args.player_processes), args.edge_nice))
    summary = {k: v for k, v in result.items() if k not in ("answer_ms", "hint_first_byte_ms")}
    for key, value in summary.items():
        print(f"{key}: {value if not isinstance(value, float) else round(value, 3)}")
    collapsed = (result["origin_requests_per_blocking_key_max"] <= 1
                 and result["origin_requests_per_part_max"] <= 1)
    if not args.no_record:
        run_ = Run(args.record, settings={"players": args.players, "seconds": args.seconds,
                                          "edge_workers": args.workers,
                                          "edge_nice": args.edge_nice})
        run_.case(
            "llhls_answer_after_part",
            ours={"edge_p99_ms": [result["edge_answer_p99_ms_at_most"]],
                  "edge_p50_ms": [result["edge_answer_p50_ms_at_most"]],
                  "player_answer_ms": result["answer_ms"] or [0.0],
                  "player_p99_ms": [result["answer_after_part_p99_ms"]]},
            target_of="edge_p99_ms", target="<= 50",
            errors=result["failures"], correct=collapsed, unit="ms",
            notes=f"{args.players} low-latency players, {args.seconds:g} s, 2 s segments, "
                  f"0.333 s parts, one edge ({args.workers} workers); edge_p99_ms: the "
                  "upstream answer's arrival at the edge to each waiting player's answer "
                  "leaving it (the edge's histogram); player_*: part whole at the origin "
                  "to the answer read by a waiting player",
            **{k: v for k, v in summary.items() if k not in ("players", "seconds", "logs")},
        )
        run_.case(
            "llhls_origin_requests",
            ours={"per_blocking_key": [result["origin_requests_per_blocking_key_max"]],
                  "per_part": [result["origin_requests_per_part_max"]]},
            target_of="per_blocking_key", target="<= 1",
            errors=result["failures"], correct=collapsed, unit="requests",
            notes="origin GETs per (playlist, msn, part, skip) and per part, one edge",
        )
        run_.save()
    return 0 if result["failures"] == 0 and collapsed else 1


if __name__ == "__main__":
    sys.exit(main())
