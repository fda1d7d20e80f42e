"""`make bench`: every benchmark in turn, each against its established counterpart.

Each benchmark is also runnable alone (`python -m bench.edge --help`, ...). This runner
uses short, bounded settings so the whole set finishes in a few minutes; pass
`--full` for each benchmark's own defaults. Every benchmark writes
bench/results/NAME.json and NAME.md (`bench.record`); `make bench` then regenerates the
README's table from them (`bench.table`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

# name -> (module, quick arguments). bench.edge.edge_target is bench.edge plus the edge
# targets, cold-miss first byte and the 100k-object RSS check.
QUICK: dict[str, list[str]] = {
    "edge": ["--seconds", "2", "--rounds", "1", "--indexed", "20000"],
    "steering": ["--seconds", "5"],
    "control": ["--seconds", "15"],
    "packager": ["--seconds", "20", "--repeat", "1"],
    "appliance": ["--repeats", "2"],
    "e2e": ["--clients", "4", "--seconds", "5"],
    # hls.js, dash.js and Shaka (plain, AES-128, CENC/ClearKey) in Chromium, 30 s each
    # through an appliance: issue 18's playback targets (about 4 minutes).
    "players": ["--seconds", "30"],
    # The load test: 300 live players following the edge for 60 s on one appliance.
    "live": ["--players", "300", "--seconds", "60", "--record", "live"],
    # Low-latency HLS: 300 players blocking on parts through one edge, then hls.js in
    # Chromium through an appliance for the 120 s (p50 <= 3 s, p95 <= 4 s, 0 stalls).
    "llhls": ["--players", "300", "--seconds", "20", "--record", "llhls"],
    "llhls.glass": ["--seconds", "120", "--record", "llhls_glass"],
    # The issue's own run: 120 s of live playback in Chromium (stalls, latency p50/p95).
    "liveplay": ["--seconds", "120"],
    # The simulator's own defaults are the figures the README quotes (about 2 minutes); it
    # also writes the results table in docs/cachesim.md and docs/cachesim.png.
    "cachesim": [],
    # The HTTP caching conformance suite, edge and nginx (about 50 s).
    "conformance": [],
    # TLS handshakes/s (the origin's HTTPS listener) and the edge's HTTPS hits (16 KiB,
    # 2 MiB, unaligned 64 KiB ranges, playlists), each against nginx HTTPS (about 90 s).
    "tls": ["--seconds", "2", "--rounds", "2"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("names", nargs="*", default=list(QUICK), help="benchmarks to run")
    parser.add_argument("--full", action="store_true", help="use each benchmark's defaults")
    args = parser.parse_args(argv)
    failed = []
    for name in args.names:
        if name not in QUICK:
            parser.error(f"unknown benchmark {name!r}; choose from {', '.join(QUICK)}")
        module = "bench.edge.edge_target" if name == "edge" else f"bench.{name}"
        cmd = [sys.executable, "-m", module, *([] if args.full else QUICK[name])]
        print(f"\n=== bench.{name}: {' '.join(cmd[1:])}", flush=True)
        started = time.monotonic()
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(name)
        print(f"=== bench.{name} took {time.monotonic() - started:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
