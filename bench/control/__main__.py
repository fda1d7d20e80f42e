"""`python -m bench.control`: 1,000 simulated appliances heartbeating every 10 s against
`vcdn control` on SQLite and on PostgreSQL, with nginx answering the same requests with a
canned ack as the HTTP floor, in the same run.

For each target: register the fleet (not timed), then a bounded run of steady heartbeats;
we print sustained heartbeats/s, p50/p99 latency seen by the clients, and the CPU the
server process used (from /proc/PID/stat, as a share of one core and per beat), with
ratios to nginx. Targets from issue 3: under 10% of one core and p99 under 20 ms.

    python -m bench.control                       # 1000 appliances, 10 s interval, 30 s each
    python -m bench.control --seconds 10 --stores sqlite
    python -m bench.control --appliances 5000 --interval 5      # 1000 beats/s: find the limit
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.control.load import Result, heartbeat_load, register_all
from bench.control.procs import Server, start_control, start_nginx
from bench.procstat import cpu_seconds

TOKEN: Final = "bench-operator-token-0123456789"
APPLIANCE_TOKEN: Final = "bench-appliance-token-0123456789"
TOKENS: Final = f"operator:{TOKEN},appliance:{APPLIANCE_TOKEN}"
DEFAULT_PG: Final = "postgresql://postgres@127.0.0.1:5432/test"
CPU_TARGET: Final = 10.0  # % of one core
P99_TARGET_MS: Final = 20.0


@dataclass
class Row:
    target: str
    store: str
    result: Result
    cpu: float  # seconds

    @property
    def rate(self) -> float:
        return self.result.ok / self.result.elapsed if self.result.elapsed else 0.0

    @property
    def cpu_pct(self) -> float:
        return 100.0 * self.cpu / self.result.elapsed if self.result.elapsed else 0.0

    @property
    def cpu_ms_per_beat(self) -> float:
        return 1000.0 * self.cpu / self.result.ok if self.result.ok else float("nan")


async def measure(server: Server, args: argparse.Namespace, store: str) -> Row:
    before = cpu_seconds(server.proc.pid)
    result = await heartbeat_load(
        server.url,
        APPLIANCE_TOKEN,
        appliances=args.appliances,
        interval=args.interval,
        seconds=args.seconds,
        poll_every=args.poll if server.name == "control" else 0.0,
    )
    cpu = cpu_seconds(server.proc.pid) - before
    return Row(server.name, store, result, cpu)


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
    if store == "sqlite":
        db = f"sqlite:///{workdir}/control.db"
    else:
        schema, db = await pg_schema(args.postgres)
    server = start_control(db, TOKENS, workdir)
    try:
        await register_all(server.url, TOKEN, args.appliances)
        return await measure(server, args, store)
    finally:
        server.stop()
        if schema is not None:
            await pg_drop(args.postgres, schema)


def ratio(ours: float, theirs: float) -> str:
    """`x1.6`, or a note when the baseline used too little to measure (short runs: /proc
    counts CPU in clock ticks)."""
    return f"x{ours / theirs:.1f}" if theirs > 0 else "n/a (baseline below one clock tick)"


def print_rows(rows: list[Row], args: argparse.Namespace) -> None:
    offered = args.appliances / args.interval
    print(
        f"\ncontrol API: {args.appliances} appliances heartbeating every {args.interval:g} s "
        f"({offered:.0f} beats/s offered), {args.seconds:g} s per target, loopback\n"
    )
    head = (
        f"{'target':<8} {'store':<9} {'beats/s':>8} {'ok':>7} {'errors':>7} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'CPU %core':>9} {'CPU ms/beat':>11}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        errors = sum(r.result.errors.values())
        print(
            f"{r.target:<8} {r.store:<9} {r.rate:>8.1f} {r.result.ok:>7} {errors:>7} "
            f"{1000 * r.result.pct(50):>7.2f} {1000 * r.result.pct(99):>7.2f} "
            f"{r.cpu_pct:>9.1f} {r.cpu_ms_per_beat:>11.3f}"
        )
        if r.result.errors:
            print(f"         errors: {r.result.errors}")
    for r in rows:
        if r.result.polls:
            print(
                f"{r.target:<8} {r.store:<9} GET /appliances ({args.appliances} appliances, "
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
    print(f"\ntargets (CPU < {CPU_TARGET:g}% of one core, p99 < {P99_TARGET_MS:g} ms):")
    for r in rows:
        if r.target == "nginx":
            continue
        ok = r.cpu_pct < CPU_TARGET and 1000 * r.result.pct(99) < P99_TARGET_MS
        print(
            f"  {r.store:<9} {'PASS' if ok else 'MISS'}  CPU {r.cpu_pct:.1f}%  "
            f"p99 {1000 * r.result.pct(99):.2f} ms"
        )
    print(f"\nload average while running: {os.getloadavg()[0]:.2f} (machine shared; figures vary)")


async def main_async(args: argparse.Namespace) -> int:
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
                    rows.append(await measure(nginx, args, "(canned)"))
                finally:
                    nginx.stop()
    print_rows(rows, args)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.control", description=__doc__.split("\n")[0])
    p.add_argument("--appliances", type=int, default=1000)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between beats")
    p.add_argument("--seconds", type=float, default=30.0, help="measured run per target")
    p.add_argument(
        "--stores",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=["sqlite", "postgres"],
    )
    p.add_argument("--postgres", default=os.environ.get("VCDN_TEST_POSTGRES") or DEFAULT_PG)
    p.add_argument("--no-nginx", action="store_true", help="skip the nginx baseline")
    p.add_argument(
        "--poll",
        type=float,
        default=2.0,
        help="also GET /appliances every POLL seconds, as steering does (0: off)",
    )
    args = p.parse_args()
    if not 1 <= args.appliances <= 100_000 or not 0 < args.seconds <= 600 or args.interval <= 0:
        p.error("need 1-100000 appliances, 0 < seconds <= 600 and a positive interval")
    unknown = set(args.stores) - {"sqlite", "postgres"}
    if unknown:
        p.error(f"unknown store(s): {', '.join(sorted(unknown))}")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
