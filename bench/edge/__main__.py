"""`python -m bench.edge`: hit-path throughput of our servers against nginx, same run.

Each target serves the same files from a temporary directory; servers are pinned to
core 0 and wrk (1 thread) to core 1. All targets run at once (idle ones cost nothing);
for every case each gets a short warm-up, then bounded runs alternating between targets
(`--rounds`, median kept), so drifts in the machine's load hit every target alike. We
print requests/s, MB/s, p99 latency, server CPU time per request (from
/proc/PID/stat of the server's process tree, before and after) and ratios to nginx.

    python -m bench.edge                         # all cases, nginx and origin, 3 x 4 s each
    python -m bench.edge --targets nginx,origin,edge --seconds 3 --cases 16k,2m
    python -m bench.edge --strace                # proof mode: sendfile calls under strace
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.edge import content, wrk
from bench.edge.targets import TARGETS, Target
from bench.procstat import cpu_seconds, free_port, tree


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


def verify(target: Target, case: content.Case) -> None:
    """One request per case: the server answers with the right status and length."""
    headers = {"Range": f"bytes=0-{case.range_size - 1}"} if case.range_size else {}
    url = f"{target.url_prefix}{content.TITLE}/{case.paths[0]}"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        body = r.read()
        want = 206 if case.range_size else 200
        if r.status != want or len(body) != case.expected_length:
            raise RuntimeError(f"{target.name} {case.name}: {r.status}, {len(body)} bytes")


def prepare(target: Target, case: content.Case, args: argparse.Namespace, work: Path) -> None:
    verify(target, case)
    if target.warm:
        for path in case.paths:
            urllib.request.urlopen(f"{target.url_prefix}{content.TITLE}/{path}").read()
    wrk.run(target.url_prefix, case, seconds=1, connections=args.connections, work=work)


def measure(target: Target, case: content.Case, args: argparse.Namespace,
            work: Path) -> dict[str, float]:
    """One bounded wrk run against a started, warmed target."""
    cpu0, (_, wait0), t0 = cpu_seconds(target.pid), sched_seconds(target.pid), time.time()
    res = wrk.run(target.url_prefix, case, seconds=args.seconds,
                  connections=args.connections, work=work)
    cpu = cpu_seconds(target.pid) - cpu0
    waited = (sched_seconds(target.pid)[1] - wait0) / (time.time() - t0)
    r = {
        "rps": res.rps, "mbps": res.mbps, "p50_ms": res.p50_us / 1000,
        "p99_ms": res.p99_us / 1000, "cpu_us_per_req": cpu / max(res.requests, 1) * 1e6,
        "errors": res.errors + res.status_errors, "rss_mib": rss_mib(target.pid),
        "cpu_busy": cpu / args.seconds, "runqueue_wait": waited,
    }
    print(f"  {target.name:8} {case.name:9} {r['rps']:10.0f} req/s {r['mbps']:9.1f} MB/s "
          f"p99 {r['p99_ms']:7.2f} ms  cpu {r['cpu_us_per_req']:7.1f} us/req  "
          f"busy {r['cpu_busy']:4.0%} waited-for-cpu {r['runqueue_wait']:4.0%}  "
          f"errors {r['errors']:.0f}", flush=True)
    return r


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
                    prepare(target, case, args, work)  # verified and warmed (an edge fills)
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.edge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="nginx,origin",
                   help=f"comma-separated, from {', '.join(TARGETS)} (nginx is the baseline)")
    p.add_argument("--cases", default="16k,2m,range64k,playlist")
    p.add_argument("--seconds", type=float, default=4.0, help="per run (max 30)")
    p.add_argument("--rounds", type=int, default=3,
                   help="runs per case and target, alternating targets; the median is kept")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--strace", action="store_true", help="sendfile proof mode")
    p.add_argument("--json", type=Path, help="also write the figures here")
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
                    prepare(target, case, args, work)
                for _ in range(args.rounds):
                    for target in targets:
                        result = measure(target, case, args, work)
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
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"bench.edge: {' '.join(map(str, exc.cmd))} failed:\n{exc.stdout}\n{exc.stderr}",
              file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
