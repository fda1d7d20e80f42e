"""The edge as a target of `bench.edge`, plus the edge-only measurements.

Importing this module adds three targets to `bench.edge.targets.TARGETS` (an edge in front
of `vcdn origin`, caches warmed before measuring, so wrk measures hits):

* ``edge``         unsigned ``/v/{title}/{path}`` (appliance mode, auth none)
* ``edge-signed``  ``/s/{token}/{title}/{path}``: the token is checked on every request
* ``edge-signed-fresh``  the same, but a new token every `FRESH_BATCH` requests, as real
  players bring them: each is verified (HMAC) before the edge remembers it
* ``edge-proxy``   ``vcdn edge --auth none``: the generic RFC 9111 reverse proxy

Run it as ``python -m bench.edge.edge_target`` for the whole edge comparison: the hit
cases against nginx, then cold-miss time to first byte (edge vs the origin directly),
then start-up time and RSS of a worker with 100k objects indexed. Everything is bounded in
time and stays on loopback.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Final

from bench.edge import __main__ as harness
from bench.edge import content
from bench.edge.targets import (
    LOAD_CPU,
    REPO,
    SERVER_CPU,
    TARGETS,
    Target,
    wait_ready,
)
from bench.record import Run
from onebox.procs import free_port

KEYS: Final = "bench:bench-secret-0123456789"
#: Requests per new token for edge-signed-fresh (a player's few segments per token).
FRESH_BATCH: Final = 4
_issued = 0
COLD_OBJECTS: Final = 30
INDEXED: Final = 100_000


def _origin_cmd(root: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "vcdn.cli", "origin", "--root", str(root), "--port", str(port)]


def _edge_cmd(work: Path, origin_port: int, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "vcdn.cli",
        "edge",
        "--cache-dir",
        str(work / f"edge-cache-{port}"),
        "--capacity",
        "2GiB",
        "--upstream",
        f"http://127.0.0.1:{origin_port}",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        *extra,
    ]


def _token(serial: int = 0) -> str:
    """A valid token for the bench title; distinct serials give distinct tokens (the expiry
    differs by that many seconds), so no two runs share one."""
    from vcdn import tokens

    kid, _, secret = KEYS.partition(":")
    return tokens.sign(
        content.TITLE, key_id=kid, key=secret.encode(), expires=int(time.time()) + 86400 + serial
    )


def _fresh_prefixes(port: int) -> Callable[[int], list[str]]:
    def make(n: int) -> list[str]:
        global _issued
        start, _issued = _issued, _issued + n
        return [f"http://127.0.0.1:{port}/s/{_token(1 + start + i)}/" for i in range(n)]

    return make


def edge(root: Path, port: int, work: Path) -> Target:
    o = free_port()
    return Target(
        "edge",
        [_origin_cmd(root, o), _edge_cmd(work, o, port, "--auth", "none", "--mode", "appliance")],
        f"http://127.0.0.1:{port}/v/",
        ready_urls=[f"http://127.0.0.1:{o}/healthz", f"http://127.0.0.1:{port}/healthz"],
        warm=True,
    )


def edge_signed(root: Path, port: int, work: Path) -> Target:
    o = free_port()
    return Target(
        "edge-signed",
        [_origin_cmd(root, o), _edge_cmd(work, o, port, "--auth", "tokens")],
        f"http://127.0.0.1:{port}/s/{_token()}/",
        ready_urls=[f"http://127.0.0.1:{o}/healthz", f"http://127.0.0.1:{port}/healthz"],
        warm=True,
        env={"VCDN_SIGNING_KEYS": KEYS},
    )


def edge_signed_fresh(root: Path, port: int, work: Path) -> Target:
    t = edge_signed(root, port, work)
    t.name = "edge-signed-fresh"
    t.fresh_prefixes = _fresh_prefixes(port)
    t.batch = FRESH_BATCH
    return t


def edge_proxy(root: Path, port: int, work: Path) -> Target:
    o = free_port()
    return Target(
        "edge-proxy",
        [_origin_cmd(root, o), _edge_cmd(work, o, port, "--auth", "none")],
        f"http://127.0.0.1:{port}/v/",
        ready_urls=[f"http://127.0.0.1:{o}/healthz", f"http://127.0.0.1:{port}/healthz"],
        warm=True,
    )


TARGETS.update({"edge": edge, "edge-signed": edge_signed, "edge-signed-fresh": edge_signed_fresh,
                "edge-proxy": edge_proxy})


# --- cold misses -------------------------------------------------------------------------


def ttfb(port: int, path: str) -> float:
    """Seconds from sending a GET to the first byte of the answer (a raw socket, no client
    library in the way), then the whole body is drained."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        start = time.perf_counter()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        first = s.recv(65536)
        elapsed = time.perf_counter() - start
        if not first.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"GET {path}: {first[:100]!r}")
        while s.recv(1 << 20):
            pass
    return elapsed


def cold_misses(root: Path, work: Path) -> tuple[list[float], list[float]]:
    """Times to first byte of cold 2 MiB objects: through the edge vs the origin.

    The origin runs on the load core and the edge on the server core, as they would on two
    machines, so "through the edge" costs exactly one more hop and the edge's own work.
    """
    cold = root / content.TITLE / "cold"
    cold.mkdir(parents=True, exist_ok=True)
    for i in range(2 * COLD_OBJECTS):
        (cold / f"c{i:03d}.m4s").write_bytes(os.urandom(content.LARGE))
    origin_port, edge_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for cpu, cmd, port in (
            (LOAD_CPU, _origin_cmd(root, origin_port), origin_port),
            (
                SERVER_CPU,
                _edge_cmd(work, origin_port, edge_port, "--auth", "none", "--mode", "appliance"),
                edge_port,
            ),
        ):
            log = work / f"cold-{port}.log"
            procs.append(
                subprocess.Popen(
                    ["taskset", "-c", cpu, *cmd],
                    cwd=REPO,
                    stdout=log.open("wb"),
                    stderr=subprocess.STDOUT,
                )
            )
            wait_ready(procs[-1], f"http://127.0.0.1:{port}/healthz", log)
        # Warm both servers' code paths (not the objects) with a throwaway object each.
        for _ in range(3):
            ttfb(origin_port, f"/v/{content.TITLE}/m2/seg_00000.m4s")
            ttfb(edge_port, f"/v/{content.TITLE}/m2/seg_00001.m4s")
        via_edge, direct = [], []
        for i in range(COLD_OBJECTS):
            direct.append(ttfb(origin_port, f"/v/{content.TITLE}/cold/c{2 * i:03d}.m4s"))
            via_edge.append(ttfb(edge_port, f"/v/{content.TITLE}/cold/c{2 * i + 1:03d}.m4s"))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)
    return via_edge, direct


# --- a big index -------------------------------------------------------------------------


def indexed_rss(work: Path, n: int) -> tuple[float, float, float]:
    """(seconds to build, seconds until a worker listens, its RSS in MiB) with `n` objects."""
    from edge.store import CacheStore

    cache = work / "big-index"
    start = time.monotonic()
    store = CacheStore(cache, 10**12)
    now = time.time()
    rows = []
    for i in range(n):
        name = f"{i:040x}-00000000"
        d = store.objects_dir / name[:2]
        if not d.exists():
            d.mkdir()
        os.close(os.open(d / name, os.O_CREAT | os.O_WRONLY, 0o644))
        rows.append(
            (
                f"{content.TITLE}/obj/{i:06d}.m4s",
                content.TITLE,
                f"obj/{i:06d}.m4s",
                name,
                0,
                None,
                f'"{i:x}"',
                now,
                "video/mp4",
                None,
                "[]",
                now,
                now,
                0,
                1e9,
                now,
            )
        )
    store._db.execute("BEGIN")
    store._db.executemany(
        "INSERT INTO objects (key, title, path, file, size, sha256, etag, last_modified, "
        "content_type, cache_control, headers, stored_at, response_time, initial_age, lifetime, "
        "last_access) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    store._db.execute("COMMIT")
    store.close()
    built = time.monotonic() - start
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "vcdn.cli",
        "edge",
        "--cache-dir",
        str(cache),
        "--capacity",
        "1TiB",
        "--upstream",
        "http://127.0.0.1:9",
        "--auth",
        "none",
        "--mode",
        "appliance",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
    ]
    log = open(work / "big-index.log", "wb")
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/healthz", work / "big-index.log", timeout=120)
        started = time.monotonic() - start
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/v/{content.TITLE}/obj/000007.m4s"
        ) as r:
            assert r.status == 200
        return built, started, harness.rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.edge.edge_target",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--targets", default="nginx,edge,edge-signed,edge-signed-fresh")
    p.add_argument("--cases", default="16k,2m,range64k,range_unaligned,range_suffix,multirange,"
                   "playlist")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3, help="runs per case and target (median)")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--indexed", type=int, default=INDEXED, help="objects for the RSS check")
    p.add_argument("--skip-hits", action="store_true")
    p.add_argument(
        "--strace",
        action="store_true",
        help="prove hits use sendfile(2): the harness's strace mode on the edge",
    )
    p.add_argument("--no-record", action="store_true", help="do not write bench/results/edge.*")
    args = p.parse_args(argv)
    if args.strace:
        targets = ",".join(t for t in args.targets.split(",") if t != "nginx")
        return harness.main(["--strace", "--targets", targets, "--cases", "2m,range64k"])
    run = Run("edge", settings=vars(args))
    status = 0
    if not args.skip_hits:
        status = harness.main(
            ["--targets", args.targets, "--cases", args.cases, "--seconds", str(args.seconds),
             "--rounds", str(args.rounds), "--connections", str(args.connections)],
            record=run,
        )
    work = Path(tempfile.mkdtemp(prefix="vcdn-bench-edge2-"))
    work.chmod(0o755)
    try:
        root = work / "root"
        content.build(root)
        via_edge, direct = cold_misses(root, work)
        e, o = statistics.median(via_edge), statistics.median(direct)
        verdict = "OK" if e <= o + 0.002 else "MISSED"
        print(
            f"\ncold miss, 2 MiB objects, median of {COLD_OBJECTS}: time to first byte "
            f"edge {e * 1000:.2f} ms vs origin directly {o * 1000:.2f} ms "
            f"(+{(e - o) * 1000:.2f} ms; target <= +2 ms: {verdict})"
        )
        run.case("cold_miss_ttfb",
                 ours={"ttfb_ms": [x * 1000 for x in via_edge],
                       "extra_ms": [(a - b) * 1000 for a, b in zip(via_edge, direct, strict=True)]},
                 theirs={"ttfb_ms": [x * 1000 for x in direct]}, server="vcdn origin",
                 ratio_of="ttfb_ms", target_of="extra_ms", target="<= 2 ms", unit="ms",
                 title="cold-miss first byte through the edge, over the origin directly",
                 notes=f"median of {COLD_OBJECTS} cold 2 MiB objects each; origin on the load "
                       "core, edge on the server core")
        built, started, rss = indexed_rss(work, args.indexed)
        verdict = "OK" if rss <= 150 else "MISSED"
        print(
            f"{args.indexed} objects indexed: built in {built:.1f} s; worker listening after "
            f"{started:.2f} s (reconcile + load); RSS {rss:.1f} MiB "
            f"(target <= 150 MiB per worker: {verdict})"
        )
        run.case("indexed_rss", ours={"rss_mib": rss, "listen_s": started}, target_of="rss_mib",
                 target="<= 150 MiB", unit="MiB",
                 title=f"{args.indexed:,} objects indexed: one worker's RSS",
                 notes=f"worker listening after {started:.2f} s (reconcile + load)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_record:
        run.save()
    return status


if __name__ == "__main__":
    sys.exit(main())
