"""`python -m bench.control`: simulated appliances heartbeating every 10 s against
`vcdn control` on SQLite, on PostgreSQL, and as 2 replicas on one PostgreSQL, with nginx
answering the same requests with a canned ack as the HTTP floor, in the same run.

For each target: register the fleet and let every appliance beat once (not timed: a first
beat also looks up its token and its appliance), then a bounded run of steady heartbeats;
we print sustained heartbeats/s, p50/p99 latency seen by the clients, and CPU as a share
of one core: the server processes (from /proc/PID/stat) and, on PostgreSQL, the backends
serving them (found by the run's `application_name` in pg_stat_activity), since a figure
without the database's CPU flatters PostgreSQL. The load generator is pinned to CPU 0 and
the servers to CPU 1 (taskset) when there are two; PostgreSQL, a system service, is not
pinned. Targets: one instance (1,000 appliances) under 10% of one core with p99 under
20 ms; 2 replicas (10,000 appliances) within one core in total with p99 under 50 ms.
Results go to bench/results/control.json (bench.record).

    python -m bench.control                       # the three targets and nginx, 30 s each
    python -m bench.control --seconds 10 --stores replicas --replica-appliances 2000
    python -m bench.control --appliances 5000 --interval 5      # 1000 beats/s: find the limit
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.control.load import Result, heartbeat_load, register_all
from bench.control.pgcpu import BackendCpu
from bench.control.procs import Server, start_control, start_nginx
from bench.procstat import cpu_seconds
from bench.record import Run

TOKEN: Final = "bench-operator-token-0123456789"
APPLIANCE_TOKEN: Final = "bench-appliance-token-0123456789"  # the canned server's only
TOKENS: Final = f"operator:{TOKEN}"  # each appliance is enrolled: a token of its own
DEFAULT_PG: Final = "postgresql://postgres@127.0.0.1:5432/test"
CPU_TARGET: Final = 10.0  # % of one core, one instance
P99_TARGET_MS: Final = 20.0
REPLICAS_CPU_TARGET: Final = 100.0  # % of one core: replicas and PostgreSQL together
REPLICAS_P99_TARGET_MS: Final = 50.0
STORES: Final = ("sqlite", "postgres", "replicas")
TWO_CPUS: Final = len(os.sched_getaffinity(0)) >= 2
LOAD_CPU: Final = 0
SERVER_CPU: Final = 1 if TWO_CPUS else None


@dataclass
class Row:
    target: str
    store: str
    result: Result
    cpu: float  # seconds, the server processes
    pg_cpu: float = 0.0  # seconds, the PostgreSQL backends serving them
    replicas: int = 1
    appliances: int = 0
    load_cpu: float = 0.0  # seconds, the load generator (near 1 core/s: it is the limit)

    @property
    def rate(self) -> float:
        return self.result.ok / self.result.elapsed if self.result.elapsed else 0.0

    @property
    def cpu_pct(self) -> float:
        """Servers and their PostgreSQL backends, % of one core."""
        used = self.cpu + self.pg_cpu
        return 100.0 * used / self.result.elapsed if self.result.elapsed else 0.0

    @property
    def load_pct(self) -> float:
        return 100.0 * self.load_cpu / self.result.elapsed if self.result.elapsed else 0.0

    @property
    def pg_pct(self) -> float:
        return 100.0 * self.pg_cpu / self.result.elapsed if self.result.elapsed else 0.0

    @property
    def cpu_ms_per_beat(self) -> float:
        used = self.cpu + self.pg_cpu
        return 1000.0 * used / self.result.ok if self.result.ok else float("nan")


async def measure(
    servers: list[Server],
    args: argparse.Namespace,
    store: str,
    appliances: int,
    pg: BackendCpu | None = None,
    tokens: Sequence[str] = (APPLIANCE_TOKEN,),
) -> Row:
    if args.warmup > 0:  # every appliance beats once, unmeasured: the steady state
        await heartbeat_load(
            [s.url for s in servers], tokens, appliances=appliances,
            interval=args.interval, seconds=args.warmup,
        )
    before = [cpu_seconds(s.proc.pid) for s in servers]
    load_before = own_cpu()
    if pg is not None:
        await pg.start()
    result = await heartbeat_load(
        [s.url for s in servers],
        tokens,
        appliances=appliances,
        interval=args.interval,
        seconds=args.seconds,
        poll_every=args.poll if servers[0].name == "control" else 0.0,
    )
    load_cpu = own_cpu() - load_before
    cpu = sum(cpu_seconds(s.proc.pid) - b for s, b in zip(servers, before, strict=True))
    pg_cpu = (await pg.stop())[0] if pg is not None else 0.0
    return Row(servers[0].name, store, result, cpu, pg_cpu, len(servers), appliances, load_cpu)


def own_cpu() -> float:
    """CPU seconds of this process (the load generator), threads included."""
    t = os.times()
    return t.user + t.system


async def pg_schema(base: str) -> tuple[str, str]:
    import asyncpg

    name = f"vcdn_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(base, timeout=5)
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
    finally:
        await conn.close()
    sep = "&" if "?" in base else "?"
    return name, f"{base}{sep}search_path={name}"


async def pg_drop(base: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


async def run_control(store: str, args: argparse.Namespace, workdir: Path) -> Row:
    schema = None
    pg = None
    replicas = args.replicas if store == "replicas" else 1
    appliances = args.replica_appliances if store == "replicas" else args.appliances
    if store == "sqlite":
        db = f"sqlite:///{workdir}/control.db"
    else:
        schema, db = await pg_schema(args.postgres)
        application = f"vcdn-bench-{uuid.uuid4().hex[:8]}"
        db = f"{db}&application_name={application}"
        pg = BackendCpu(args.postgres, application)
    servers: list[Server] = []
    try:
        for i in range(replicas):
            home = workdir / f"r{i}"
            home.mkdir()
            servers.append(start_control(db, TOKENS, home, SERVER_CPU))
        tokens = await register_all(servers[0].url, TOKEN, appliances)
        return await measure(servers, args, store, appliances, pg, tokens)
    finally:
        for server in servers:
            server.stop()
        if schema is not None:
            await pg_drop(args.postgres, schema)


def ratio(ours: float, theirs: float) -> str:
    """`x1.6`, or a note when the baseline used too little to measure (short runs: /proc
    counts CPU in clock ticks)."""
    return f"x{ours / theirs:.1f}" if theirs > 0 else "n/a (baseline below one clock tick)"


def targets(r: Row) -> tuple[float, float]:
    """(CPU % of one core, p99 ms) this row must stay under."""
    if r.store == "replicas":
        return REPLICAS_CPU_TARGET, REPLICAS_P99_TARGET_MS
    return CPU_TARGET, P99_TARGET_MS


def print_rows(rows: list[Row], args: argparse.Namespace) -> None:
    print(
        f"\ncontrol API: appliances heartbeating every {args.interval:g} s, {args.seconds:g} s "
        f"per target, loopback; load on CPU {LOAD_CPU}, servers on CPU {SERVER_CPU} "
        "(PostgreSQL unpinned); CPU = servers + their PostgreSQL backends\n"
    )
    head = (
        f"{'target':<8} {'store':<9} {'fleet':>6} {'beats/s':>8} {'ok':>7} {'errors':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'CPU %core':>9} {'of it PG':>8} {'CPU ms/beat':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        errors = sum(r.result.errors.values())
        print(
            f"{r.target:<8} {r.store:<9} {r.appliances:>6} {r.rate:>8.1f} {r.result.ok:>7} "
            f"{errors:>7} {1000 * r.result.pct(50):>7.2f} {1000 * r.result.pct(99):>7.2f} "
            f"{r.cpu_pct:>9.1f} {r.pg_pct:>8.1f} {r.cpu_ms_per_beat:>11.3f}"
        )
        if r.result.errors:
            print(f"         errors: {r.result.errors}")
    for r in rows:
        print(f"{r.target:<8} {r.store:<9} load generator CPU {r.load_pct:.0f}% of one core"
              + (" (saturated: latencies include its own queueing)" if r.load_pct > 90 else ""))
    for r in rows:
        if r.result.polls:
            print(
                f"{r.target:<8} {r.store:<9} GET /appliances ({r.appliances} appliances, "
                f"every {args.poll:g} s): p50 {1000 * r.result.pct(50, r.result.polls):.1f} ms, "
                f"max {1000 * max(r.result.polls):.1f} ms"
            )
    base = next((r for r in rows if r.target == "nginx"), None)
    if base is not None:
        print("\nratios to nginx (canned ack, no auth/JSON/database):")
        for r in rows:
            if r is base:
                continue
            print(
                f"  {r.store:<9} CPU/beat {ratio(r.cpu_ms_per_beat, base.cpu_ms_per_beat)}   "
                f"p50 {ratio(r.result.pct(50), base.result.pct(50))}   "
                f"p99 {ratio(r.result.pct(99), base.result.pct(99))}"
            )
    print("\ntargets:")
    for r in rows:
        if r.target == "nginx":
            continue
        cpu_max, p99_max = targets(r)
        ok = r.cpu_pct < cpu_max and 1000 * r.result.pct(99) < p99_max
        print(
            f"  {r.store:<9} {'PASS' if ok else 'MISS'}  CPU {r.cpu_pct:.1f}% (< {cpu_max:g}%)  "
            f"p99 {1000 * r.result.pct(99):.2f} ms (< {p99_max:g} ms)"
        )
    print(f"\nload average while running: {os.getloadavg()[0]:.2f} (machine shared; figures vary)")


def record(rows: list[Row], args: argparse.Namespace) -> None:
    """bench/results/control.json: one case per target and metric with a target."""
    run = Run(
        "control",
        settings={
            "interval": args.interval, "seconds": args.seconds, "poll": args.poll,
            "warmup": args.warmup,
            "load_cpu": LOAD_CPU, "server_cpu": SERVER_CPU, "replicas": args.replicas,
        },
    )
    base = next((r for r in rows if r.target == "nginx"), None)
    for r in rows:
        if r.target == "nginx":
            continue
        cpu_max, p99_max = targets(r)
        ours = {
            "p99_ms": [1000 * r.result.pct(99)],
            "p50_ms": [1000 * r.result.pct(50)],
            "beats_per_s": [r.rate],
            "cpu_pct_core": [r.cpu_pct],
            "pg_cpu_pct_core": [r.pg_pct],
            "cpu_ms_per_beat": [r.cpu_ms_per_beat],
            "load_generator_cpu_pct_core": [r.load_pct],
        }
        errors = sum(r.result.errors.values())
        what = f"{r.appliances} appliances at {args.interval:g} s, {r.replicas} instance(s)"
        common = {
            "errors": errors, "unit": "ms", "appliances": r.appliances, "replicas": r.replicas,
            "notes": f"{what}; CPU counts the servers and their PostgreSQL backends",
        }
        if base is not None and not base.cpu_ms_per_beat > 0:
            base = None  # the baseline used less than a clock tick: no ratio to give
        theirs = {"cpu_ms_per_beat": [base.cpu_ms_per_beat]} if base else None
        run.case(f"{r.store}_p99", ours=ours, target_of="p99_ms", target=f"< {p99_max:g}",
                 theirs=theirs, server="nginx" if base else None,
                 ratio_of="cpu_ms_per_beat" if base else None, **common)
        cpu_first = {"cpu_pct_core": ours["cpu_pct_core"], **ours}  # the line shows the first
        run.case(f"{r.store}_cpu", ours=cpu_first, target_of="cpu_pct_core",
                 target=f"< {cpu_max:g}",
                 **{**common, "unit": "% of one core"})
    run.save()


async def main_async(args: argparse.Namespace) -> int:
    if SERVER_CPU is not None:
        os.sched_setaffinity(0, {LOAD_CPU})  # the load generator: this process
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="vcdn-bench-control-") as tmp:
        for store in args.stores:
            workdir = Path(tmp) / store
            workdir.mkdir()
            print(f"running vcdn control on {store} ...", flush=True)
            rows.append(await run_control(store, args, workdir))
        if not args.no_nginx:
            workdir = Path(tmp) / "nginx"
            workdir.mkdir()
            nginx = start_nginx(workdir)
            if nginx is None:
                print("nginx not installed: no baseline (apt-get install nginx-light)")
            else:
                print("running nginx baseline ...", flush=True)
                try:
                    rows.append(await measure([nginx], args, "(canned)", args.appliances))
                finally:
                    nginx.stop()
    print_rows(rows, args)
    if not args.no_record:
        record(rows, args)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.control", description=__doc__.split("\n")[0])
    p.add_argument("--appliances", type=int, default=1000, help="fleet of one instance")
    p.add_argument("--replicas", type=int, default=2, help="control instances (replicas)")
    p.add_argument("--replica-appliances", type=int, default=10_000, help="fleet of the replicas")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between beats")
    p.add_argument("--seconds", type=float, default=30.0, help="measured run per target")
    p.add_argument(
        "--stores",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=list(STORES),
        help="targets among sqlite, postgres, replicas (2 instances on one PostgreSQL)",
    )
    p.add_argument("--postgres", default=os.environ.get("VCDN_TEST_POSTGRES") or DEFAULT_PG)
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of beats before measuring (default: one interval, so that every "
        "appliance has beaten once: a first beat also looks up its token and appliance)",
    )
    p.add_argument("--no-nginx", action="store_true", help="skip the nginx baseline")
    p.add_argument("--no-record", action="store_true", help="print only, write no results")
    p.add_argument(
        "--poll",
        type=float,
        default=2.0,
        help="also GET /appliances every POLL seconds, as steering does (0: off)",
    )
    args = p.parse_args()
    if args.warmup is None:
        args.warmup = args.interval
    fleets = (args.appliances, args.replica_appliances)
    if not all(1 <= n <= 100_000 for n in fleets) or not 0 < args.seconds <= 600:
        p.error("need 1-100000 appliances and 0 < seconds <= 600")
    if not 0 <= args.warmup <= 600:
        p.error("need 0 <= warmup <= 600")
    if args.interval <= 0 or not 1 <= args.replicas <= 8:
        p.error("need a positive interval and 1-8 replicas")
    unknown = set(args.stores) - set(STORES)
    if unknown:
        p.error(f"unknown store(s): {', '.join(sorted(unknown))}")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
