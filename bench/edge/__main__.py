"""`python -m bench.edge`: hit-path throughput of our servers against nginx, same run.

Each target serves the same files from a temporary directory; servers are pinned to
core 0 and wrk (1 thread) to core 1. All targets run at once (idle ones cost nothing);
for every case each gets a short warm-up, then bounded runs alternating between targets
(`--rounds`, median kept), so drifts in the machine's load hit every target alike. We
print requests/s, MB/s, p99 latency, server CPU time per request (from
/proc/PID/stat of the server's process tree, before and after) and ratios to nginx.
During every run a byte checker (`bench.edge.check`) samples the same requests and
compares each body with the file; a case with errors or a wrong byte gets no ratio.
With `--record NAME` the run is written to bench/results/NAME.json (`bench.record`).

    python -m bench.edge                         # all cases, nginx and origin, 3 x 4 s each
    python -m bench.edge --targets nginx,origin,edge --seconds 3 --cases 16k,2m
    python -m bench.edge --strace                # proof mode: sendfile calls under strace
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from bench.edge import content, wrk
from bench.edge.check import Sampler
from bench.edge.targets import TARGETS, Target
from bench.procstat import cpu_seconds, tree
from bench.record import Run
from onebox.procs import free_port

#: The README's targets per case (ratio of req/s to nginx).
TARGET_RATIO = {"2m": ">= 0.8"}
DEFAULT_TARGET = ">= 0.25"
#: A rough ceiling on a target's request rate, to make enough new tokens for a run.
MAX_RPS = 50_000
MAX_TOKENS = 60_000


def sched_seconds(pid: int) -> tuple[float, float]:
    """(time on a CPU, time runnable but waiting for one) of the process tree, in seconds."""
    run = wait = 0
    for p in tree(pid):
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                on_cpu, waiting, _ = (task / "schedstat").read_text().split()
            except (OSError, ValueError):
                continue
            run += int(on_cpu)
            wait += int(waiting)
    return run / 1e9, wait / 1e9


def rss_mib(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def verify(target: Target, case: content.Case, root: Path) -> None:
    """A few checked requests per case before any load: right status, right bytes."""
    sampler = Sampler(target.url_prefix, case, root, seed=0)
    u = urlsplit(target.url_prefix)
    conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)
    rng = random.Random(0)
    try:
        for _ in range(5):
            sampler.once(conn, rng)
    finally:
        conn.close()
    if sampler.failures:
        raise RuntimeError(f"{target.name} {case.name}: {sampler.failures[0]}")


def prepare(target: Target, case: content.Case, args: argparse.Namespace, work: Path,
            root: Path) -> None:
    if target.warm:
        for path in case.paths:
            urllib.request.urlopen(f"{target.url_prefix}{content.TITLE}/{path}").read()
    verify(target, case, root)
    wrk.run(target.url_prefix, case, seconds=1, connections=args.connections, work=work)


def measure(target: Target, case: content.Case, args: argparse.Namespace,
            work: Path, root: Path, seed: int) -> dict[str, float]:
    """One bounded wrk run against a started, warmed target, bytes sampled meanwhile."""
    prefixes: list[str] = []
    if target.fresh_prefixes is not None:
        n = min(MAX_TOKENS, math.ceil(args.seconds * MAX_RPS / target.batch))
        prefixes = target.fresh_prefixes(n)
    cpu0, (_, wait0), t0 = cpu_seconds(target.pid), sched_seconds(target.pid), time.time()
    with Sampler(target.url_prefix, case, root, seed=seed) as sampler:
        res = wrk.run(target.url_prefix, case, seconds=args.seconds,
                      connections=args.connections, work=work, prefixes=prefixes,
                      batch=target.batch)
    cpu = cpu_seconds(target.pid) - cpu0
    waited = (sched_seconds(target.pid)[1] - wait0) / (time.time() - t0)
    r = {
        "rps": res.rps, "mbps": res.mbps, "p50_ms": res.p50_us / 1000,
        "p99_ms": res.p99_us / 1000, "cpu_us_per_req": cpu / max(res.requests, 1) * 1e6,
        "errors": res.errors + res.status_errors, "rss_mib": rss_mib(target.pid),
        "cpu_busy": cpu / args.seconds, "runqueue_wait": waited,
        "requests": res.requests, "checks": sampler.checks,
        "bad_bytes": len(sampler.failures),
    }
    if prefixes:
        # Share of requests that brought a token this worker had not seen before.
        r["new_token_share"] = min(1.0, len(prefixes) * target.batch / max(res.requests, 1))
    for failure in sampler.failures[:3]:
        print(f"  {target.name} {case.name}: WRONG BYTES {failure}", flush=True)
    print(f"  {target.name:8} {case.name:9} {r['rps']:10.0f} req/s {r['mbps']:9.1f} MB/s "
          f"p99 {r['p99_ms']:7.2f} ms  cpu {r['cpu_us_per_req']:7.1f} us/req  "
          f"busy {r['cpu_busy']:4.0%} waited-for-cpu {r['runqueue_wait']:4.0%}  "
          f"errors {r['errors']:.0f}  checked {sampler.checks} ({len(sampler.failures)} bad)",
          flush=True)
    return r


def record_hits(record: Run, runs: dict[str, dict[str, list[dict[str, float]]]],
                cases: list[content.Case], args: argparse.Namespace) -> None:
    """Every (case, target) against nginx's runs of the same case, rounds as samples."""
    base = runs.get("nginx")
    metrics = ("rps", "mbps", "p50_ms", "p99_ms", "cpu_us_per_req")
    for case in cases:
        for name, by_case in runs.items():
            if name == "nginx" and base is not None and len(runs) > 1:
                continue
            rs = by_case[case.name]
            theirs = base[case.name] if base is not None and name != "nginx" else []
            ours = {m: [r[m] for r in rs] for m in metrics}
            extra = {"requests": [r["requests"] for r in rs + theirs],
                     "checks": sum(r["checks"] for r in rs + theirs),
                     "wrong_bytes": sum(r["bad_bytes"] for r in rs + theirs)}
            if any("new_token_share" in r for r in rs):
                ours["new_token_share"] = [r["new_token_share"] for r in rs]
            record.case(
                f"{name}_{case.name}", ours=ours,
                theirs={m: [r[m] for r in theirs] for m in metrics} if theirs else None,
                server="nginx" if theirs else None, ratio_of="rps",
                target=TARGET_RATIO.get(case.name, DEFAULT_TARGET) if theirs else None,
                errors=int(sum(r["errors"] for r in rs + theirs)),
                correct=extra["checks"] > 0 and extra["wrong_bytes"] == 0,
                unit="req/s", title=f"{name}: {case.description}",
                notes=f"wrk -t1 -c{args.connections}, {args.rounds} x {args.seconds:g} s; "
                      f"{extra['checks']} bodies sha256-checked during the runs", **extra)


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median request rate (rounds alternate targets, so load drifts hit
    every target alike)."""
    return sorted(runs, key=lambda r: r["rps"])[(len(runs) - 1) // 2]


def print_table(all_results: dict[str, dict[str, dict[str, float]]],
                cases: list[content.Case]) -> None:
    """Two ratios to nginx: measured req/s, and req/s per CPU second (nginx's CPU time per
    request over ours), which still means something when other work shares the cores."""
    base = all_results.get("nginx")
    print("\ncase       target      req/s      MB/s   p99 ms  cpu us/req  req/s ratio  "
          "per-CPU ratio")
    for case in cases:
        for name, results in all_results.items():
            r = results[case.name]
            ratio = per_cpu = ""
            if base is not None and name != "nginx":
                b = base[case.name]
                if any(x["errors"] or x["bad_bytes"] or not x["checks"] for x in (r, b)):
                    ratio = per_cpu = "no ratio"  # errors or wrong bytes: nothing to compare
                    print(f"{case.name:10} {name:8} {ratio}")
                    continue
                ratio = f"{r['rps'] / b['rps']:.2f}x"
                per_cpu = f"{b['cpu_us_per_req'] / max(r['cpu_us_per_req'], 1e-9):.2f}x"
            print(f"{case.name:10} {name:8} {r['rps']:9.0f} {r['mbps']:9.1f} {r['p99_ms']:8.2f} "
                  f"{r['cpu_us_per_req']:11.1f}  {ratio:>11}  {per_cpu:>13}")


def strace_proof(args: argparse.Namespace, root: Path, work: Path,
                 cases: list[content.Case]) -> int:
    """Run the (non-nginx) targets under strace -c on the large cases; count sendfile."""
    status = 0
    for name in args.targets:
        if name == "nginx":
            continue
        target = TARGETS[name](root, free_port(), work)
        out = work / f"strace-{name}.txt"
        target.start(work, wrap=["strace", "-f", "-c", "-o", str(out), "-e",
                                 "trace=sendfile,read,pread64,write,writev,sendmsg,sendto"])
        try:
            for case in cases:
                if case.name in ("2m", "range64k"):
                    prepare(target, case, args, work, root)  # verified and warmed (an edge fills)
                    wrk.run(target.url_prefix, case, seconds=2, connections=4, work=work)
        finally:
            # strace blocks fatal signals while tracing a command: stop the traced server.
            for pid in tree(target.pid)[1:]:
                try:
                    os.kill(pid, 15)
                except ProcessLookupError:
                    pass
            time.sleep(1)
            target.stop()
        text = out.read_text()
        print(f"\n== strace -c of {name} serving 2 MiB objects and 64 KiB ranges ==\n{text}")
        m = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?sendfile$", text, re.M)
        calls = int(m.group(1)) if m else 0
        print(f"{name}: sendfile calls = {calls} -> {'OK' if calls else 'NOT USING SENDFILE'}")
        status |= 0 if calls else 1
    return status


def main(argv: list[str] | None = None, record: Run | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.edge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="nginx,origin",
                   help=f"comma-separated, from {', '.join(TARGETS)} (nginx is the baseline)")
    p.add_argument("--cases", default="16k,2m,range64k,range_unaligned,range_suffix,"
                   "multirange,playlist")
    p.add_argument("--seconds", type=float, default=4.0, help="per run (max 30)")
    p.add_argument("--rounds", type=int, default=3,
                   help="runs per case and target, alternating targets; the median is kept")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--strace", action="store_true", help="sendfile proof mode")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--record", metavar="NAME", help="write bench/results/NAME.json and .md")
    args = p.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.seconds = min(args.seconds, 30.0)
    args.rounds = max(1, min(args.rounds, 10))
    for tool in ("wrk", "taskset", "nginx", *(["strace"] if args.strace else [])):
        if shutil.which(tool) is None:
            print(f"bench.edge needs '{tool}' (make bench-tools installs it).", file=sys.stderr)
            return 2
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        print(f"unknown target(s) {unknown}; known: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="vcdn-bench-edge-"))
    work.chmod(0o755)
    try:
        root = work / "root"
        all_cases = content.build(root)
        wanted = args.cases.split(",")
        cases = [c for c in all_cases if c.name in wanted]
        if args.strace:
            return strace_proof(args, root, work, cases)
        print(f"bench.edge: {args.rounds} x {args.seconds:g} s per case and target (median kept),"
              f" wrk -t1 -c{args.connections}, servers on CPU 0, wrk on CPU 1, loopback")
        targets = [TARGETS[name](root, free_port(), work) for name in args.targets]
        runs: dict[str, dict[str, list[dict[str, float]]]] = {t.name: {} for t in targets}
        try:
            for target in targets:  # all up at once; idle ones cost nothing
                target.start(work)
            for case in cases:
                for target in targets:
                    prepare(target, case, args, work, root)
                for rnd in range(args.rounds):
                    for target in targets:
                        result = measure(target, case, args, work, root, seed=rnd + 1)
                        runs[target.name].setdefault(case.name, []).append(result)
        finally:
            for target in targets:
                target.stop()
        all_results = {
            name: {case: median_run(rs) for case, rs in by_case.items()}
            for name, by_case in runs.items()
        }
        print_table(all_results, cases)
        if args.json:
            args.json.write_text(json.dumps(all_results, indent=2))
        if record is None and args.record:
            record = Run(args.record, quiet=True)
            record_hits(record, runs, cases, args)
            record.save()
        elif record is not None:
            record_hits(record, runs, cases, args)
        ok = all(r["errors"] == 0 and r["bad_bytes"] == 0 and r["checks"] > 0
                 for by_case in runs.values() for rs in by_case.values() for r in rs)
        return 0 if ok else 1
    except subprocess.CalledProcessError as exc:
        print(f"bench.edge: {' '.join(map(str, exc.cmd))} failed:\n{exc.stdout}\n{exc.stderr}",
              file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
