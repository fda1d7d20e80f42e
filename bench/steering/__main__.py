"""Steering DNS benchmark: vcdn steering against gdnsd with its geoip plugin and ECS.

    .venv/bin/python -m bench.steering [--seconds 10] [--repeat 3]

The headline is the *uncached* mix: every query carries a client network never seen
before in the run (a new /24 for IPv4, a new /48 for IPv6, 20 % IPv6) and a 0x20-cased
name, so vcdn answers each from its compiled mapping, never from a cache. Beside it,
named as such, the *cached* mix: 20,000 queries repeating 2,000 /24s byte for byte.
One core each: dnsperf pinned to CPU 0, the server to CPU 1; then vcdn `--workers 2`
against gdnsd with 2 UDP threads, both on CPUs 0-1 (which dnsperf shares: on a 2-CPU
machine this case measures sharing as much as scaling). A p99 run at half vcdn's
uncached maximum rate, for vcdn and gdnsd at the same rate.

Every run also reads the server's CPU time and dnsperf's: a q/s ratio compares servers
only when both are the limit, and one dnsperf on one core tops out near gdnsd's own rate
(on some machines well below it: gdnsd then idles part of its core). The
`uncached_per_core` case is the same runs as answered queries per server CPU second,
the capacity per core whatever bounded the run; each case lists the server's and
dnsperf's share of a core per run, so a load-generator-bound run shows as such.

Correctness during every run: a sampler sends its own uncached queries (networks not in
the file) and checks each answer: vcdn's must equal, byte for byte, the reference
`select` path run in this process on the same view; gdnsd's must be NOERROR with one of
its data centres. Only NOERROR answers count as answered (dnsperf's response codes). A
run with a wrong sampled answer records no ratio. Results: bench/results/steering.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.rcode

from bench.procstat import cpu_seconds
from bench.record import Run
from bench.steering import gdnsd, queries
from onebox.procs import free_port
from tests.steering.fakes import FakeControl, appliance

ROOT = Path(__file__).resolve().parents[2]
GEOIP = ROOT / "tests" / "data" / "geoip"
CITY = GEOIP / "GeoIP2-City-Test.mmdb"
ASN = GEOIP / "GeoLite2-ASN-Test.mmdb"
LOADGEN_CPU, SERVER_CPU = 0, 1
SAMPLES = 500  # uncached queries kept out of the file, for the sampler
SAMPLE_EVERY = 0.02  # seconds between sampled queries
GDNSD_DCS = {"127.0.10.1", "127.0.11.1", "127.0.12.1"}


@dataclass
class Result:
    name: str
    qps: float
    mean_ms: float
    lost: int
    sent: int
    p99_ms: float | None = None
    seconds: float = 0.0  # the measured dnsperf run
    server_cpu: float = 0.0  # CPU seconds of the server's process tree during it
    loadgen_cpu: float = 0.0  # CPU seconds of dnsperf during it

    @property
    def answered(self) -> float:
        return self.qps * self.seconds

    @property
    def server_us_per_query(self) -> float:
        """Server CPU per answered query: its one-core capacity is 1 / this, whatever
        bounded the run (the load generator, a shared machine)."""
        return 1e6 * self.server_cpu / self.answered if self.answered else float("nan")

    @property
    def server_pct(self) -> float:
        return 100.0 * self.server_cpu / self.seconds if self.seconds else 0.0

    @property
    def loadgen_pct(self) -> float:
        return 100.0 * self.loadgen_cpu / self.seconds if self.seconds else 0.0



def dnsperf(port: int, qfile: Path, seconds: float, rate: int | None = None,
            verbose: bool = False, cpus: str | None = None,
            clients: int = 1) -> tuple[Result, list[float]]:
    """`clients` > 1: that many source sockets, so that SO_REUSEPORT can spread them over
    the server's workers (gdnsd's threads use it too)."""
    pin = ["taskset", "-c", cpus or str(LOADGEN_CPU)]
    cmd = [*pin, "dnsperf", "-c", str(clients), "-s", "127.0.0.1", "-p", str(port),
           "-d", str(qfile), "-B", "-l", str(seconds), "-q", "200", "-t", "2"]
    if rate:
        cmd += ["-Q", str(rate)]
    if verbose:
        cmd += ["-v"]
    # Popen and wait4 rather than run: dnsperf's own CPU time (rusage) comes with its exit.
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as proc:
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)

    def num(label: str) -> float:
        m = re.search(rf"{label}:\s+([\d.]+)", out)
        return float(m.group(1)) if m else 0.0

    latencies = [float(m.group(1)) for m in re.finditer(r"^> NOERROR .* ([\d.]+)$", out,
                                                         re.MULTILINE)]
    completed = num("Queries completed")
    noerror = re.search(r"NOERROR (\d+)", out)
    share = int(noerror.group(1)) / completed if noerror and completed else 0.0
    # Only NOERROR answers count as answered.
    return Result("", num("Queries per second") * share, num(r"Average Latency \(s\)") * 1000,
                  int(num("Queries lost")), int(num("Queries sent")),
                  seconds=num("Run time \\(s\\)") or seconds,
                  loadgen_cpu=usage.ru_utime + usage.ru_stime), latencies


SATURATED_PCT = 90.0  # a server below this share of its core was not the limit


def per_cpu_s(m: Measured) -> float:
    r = m.result
    return r.answered / r.server_cpu if r.server_cpu > 0 else float("nan")


def cpu_of(runs: list[Measured]) -> dict[str, list[float]]:
    """Who was the limit in each run: the server's and dnsperf's share of a core."""
    return {"server_cpu_pct": [m.result.server_pct for m in runs],
            "server_us_per_query": [m.result.server_us_per_query for m in runs],
            "loadgen_cpu_pct": [m.result.loadgen_pct for m in runs]}


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))] * 1000


def wait_udp(port: int) -> None:
    """Until the server answers a steered query with an address (dig +short also prints
    its own errors, so any output is not enough)."""
    for _ in range(300):
        r = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+time=1", "+tries=1",
                            "+subnet=10.0.0.0/24", "edge.cdn.example", "+short"],
                           capture_output=True, text=True)
        if re.fullmatch(r"(\d+\.){3}\d+", r.stdout.split("\n")[0].strip()):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port}")


def bench_appliances() -> list[dict[str, object]]:
    """20 sites × 4 appliances around the globe; each site has a registered ISP prefix
    10.{site}.0.0/16, the first four carry the MaxMind test ASNs."""
    asns = [29518, 209, 1221, 7018]
    out = []
    for s in range(20):
        for j in range(4):
            out.append(appliance(
                f"s{s}-{j}", f"site{s}", f"http://127.0.{10 + s}.{j + 1}:8080",
                lat=-60 + 6 * s, lon=-170 + 17 * s, asn=asns[s] if s < 4 else 64500 + s,
                prefixes=[f"10.{s}.0.0/16"], rps=500.0 * j))
    return out


class Sampler(threading.Thread):
    """Sends its own queries during a run, one at a time, and checks every answer."""

    def __init__(self, port: int, queries: list[bytes],
                 check: Callable[[bytes, bytes], bool]) -> None:
        super().__init__(daemon=True)
        self.port, self.queries, self.check = port, queries, check
        self.stop = threading.Event()
        self.sent = self.ok = self.wrong = self.timeouts = 0

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            for q in itertools.cycle(self.queries):
                if self.stop.wait(SAMPLE_EVERY):
                    return
                self.sent += 1
                sock.sendto(q, ("127.0.0.1", self.port))
                try:
                    while True:
                        resp, _ = sock.recvfrom(65535)
                        if resp[:2] == q[:2]:
                            break
                except TimeoutError:
                    self.timeouts += 1
                    continue
                if self.check(q, resp):
                    self.ok += 1
                else:
                    self.wrong += 1


@dataclass
class Measured:
    result: Result
    latencies: list[float]
    sampler: Sampler


def measure(name: str, cmd: list[str], port: int, qfile: Path, warm: Path, seconds: float,
            samples: list[bytes], check: Callable[[bytes, bytes], bool], *,
            server_cpus: str = str(SERVER_CPU), loadgen_cpus: str | None = None,
            rate: int | None = None, env: dict[str, str] | None = None,
            log: Path | None = None) -> Measured:
    """One run against a fresh server: start, warm up (with `warm`, never the measured
    file), then dnsperf for `seconds` with the sampler checking answers alongside."""
    with open(log or os.devnull, "wb") as err:
        proc = subprocess.Popen(["taskset", "-c", server_cpus, *cmd], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_udp(port)
        # Several source sockets, so that SO_REUSEPORT spreads them over both workers (or
        # gdnsd threads) near evenly: with 4, a 3:1 or 4:0 split of the 4-tuple hashes
        # happens in 5 runs of 8, for both servers alike.
        clients = 1 if loadgen_cpus is None else 16
        dnsperf(port, warm, 1, cpus=loadgen_cpus, clients=clients)
        sampler = Sampler(port, samples, check)
        sampler.start()
        before = cpu_seconds(proc.pid)
        result, lat = dnsperf(port, qfile, seconds, rate=rate, verbose=rate is not None,
                              cpus=loadgen_cpus, clients=clients)
        result.server_cpu = cpu_seconds(proc.pid) - before
        sampler.stop.set()
        sampler.join(5)
        result.name = name
        result.p99_ms = p99(lat)
        return Measured(result, lat, sampler)
    finally:
        proc.terminate()
        proc.wait(15)


def reference_checker() -> Callable[[bytes, bytes], bool]:
    """vcdn's answer must be the bytes the reference path (`select`, no compiled tables)
    gives for the same view, MaxMind data and policy, computed here in the bench."""
    from steering.dns_answer import Responder, ZoneConfig
    from steering.geo import Geo
    from steering.select import Policy, select
    from steering.view import build_view
    from vcdn.schemas import ApplianceView, decode

    geo = Geo(CITY, ASN)
    view = build_view([decode(ApplianceView, a) for a in bench_appliances()])
    policy = Policy(default_site="site0")
    ref = Responder(ZoneConfig.make("cdn.example."),
                    lambda c: select(c, view, geo, policy, depth=2))
    return lambda q, resp: ref.answer(q, "127.0.0.1") == resp


def gdnsd_checker(q: bytes, resp: bytes) -> bool:
    m = dns.message.from_wire(resp)
    addrs = {rd.address for rr in m.answer for rd in rr}
    return m.rcode() == dns.rcode.NOERROR and bool(addrs) and addrs <= GDNSD_DCS


def compile_time(appliances: int = 1000, prefixes: int = 1_000_000) -> dict[str, float]:
    """ms to build a view of `appliances` with `prefixes` registered /24s and compile its
    mapping: stage 1 (prefixes, MaxMind) and stage 2 (health, load) apart."""
    from steering.compiled import CompiledMap, build_tables
    from steering.geo import Geo
    from steering.select import Policy
    from steering.view import build_view
    from vcdn.schemas import ApplianceView, decode

    rng = random.Random(3)
    nets = rng.sample(range(1 << 16, 224 << 16), prefixes)
    per = prefixes // appliances
    items = [appliance(
        f"a{i}", f"site{i // 4}", f"http://127.{(i // 4) % 250}.{i % 4}.{1 + i // 1000}:8080",
        lat=rng.uniform(-60, 60), lon=rng.uniform(-180, 180), asn=64500 + i // 4,
        rps=rng.uniform(0, 14000),
        prefixes=[f"{x >> 16}.{(x >> 8) & 255}.{x & 255}.0/24"
                  for x in nets[i * per:(i + 1) * per]]) for i in range(appliances)]
    geo = Geo(CITY, ASN)
    decoded = [decode(ApplianceView, a) for a in items]
    t0 = time.perf_counter()
    view = build_view(decoded)
    t1 = time.perf_counter()
    tables = build_tables(view, geo)
    t2 = time.perf_counter()
    CompiledMap(view, geo, Policy(), answers=2, ttl=20, udp_payload=1232, tables=tables)
    t3 = time.perf_counter()
    for i, a in enumerate(decoded[:10]):  # a load change: stage 1 is reused
        decoded[i] = dataclasses.replace(a, load=dataclasses.replace(
            a.load, requests_per_s=a.load.requests_per_s + 5000))
    view2 = build_view(decoded, previous=view)  # as steering rebuilds: the view in service
    t4 = time.perf_counter()
    CompiledMap(view2, geo, Policy(), answers=2, ttl=20, udp_payload=1232,
                tables=build_tables(view2, geo, tables))
    t5 = time.perf_counter()
    # One appliance's prefixes change: only its list is parsed again, the table rebuilt.
    decoded[0] = dataclasses.replace(decoded[0], prefixes=decoded[0].prefixes[1:])
    t6 = time.perf_counter()
    build_view(decoded, previous=view2)
    t7 = time.perf_counter()
    return {"view_ms": (t1 - t0) * 1e3, "tables_ms": (t2 - t1) * 1e3,
            "plans_ms": (t3 - t2) * 1e3, "reload_view_ms": (t4 - t3) * 1e3,
            "reload_compile_ms": (t5 - t4) * 1e3, "prefix_change_view_ms": (t7 - t6) * 1e3}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.steering")
    ap.add_argument("--seconds", type=float, default=10.0, help="dnsperf run length")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (samples)")
    ap.add_argument("--queries", type=int, default=1_000_000,
                    help="uncached queries in the file (each a new client network)")
    ap.add_argument("--compile-prefixes", type=int, default=1_000_000,
                    help="registered prefixes for the compile-time measurement (0: skip)")
    args = ap.parse_args(argv)
    for tool in ("dnsperf", "gdnsd", "taskset", "dig"):
        if shutil.which(tool) is None:
            print(f"bench.steering needs '{tool}' (make bench-tools installs it).")
            return 2
    if (os.cpu_count() or 1) < 2:
        print("bench.steering needs 2 CPUs to pin the load generator and the server apart.")
        return 2
    run = Run("steering", settings=vars(args))
    tmp = Path(tempfile.mkdtemp(prefix="vcdn-bench-steering-"))
    cached = tmp / "cached.bin"
    nets = queries.write(cached, "cdn.example.")
    pool = queries.uncached_subnets(args.queries + SAMPLES)
    uncached = tmp / "uncached.bin"
    queries.write_uncached(uncached, "cdn.example.", pool[:args.queries])
    rng = random.Random(9)
    samples = [queries.ecs_query("edge.cdn.example.", n, rng) for n in pool[args.queries:]]
    print(f"uncached: {args.queries} A queries, each a new client /24 or /48, 0x20 names; "
          f"cached: 20000 queries over {nets} /24s; {args.seconds:g} s x {args.repeat} per "
          f"case; dnsperf on CPU {LOADGEN_CPU}, server on CPU {SERVER_CPU}", flush=True)
    py = sys.executable
    check_vcdn = reference_checker()
    control = FakeControl().start()
    control.appliances = bench_appliances()
    env = {**os.environ, "VCDN_CONTROL_TOKEN": control.token,
           "VCDN_SIGNING_KEYS": "bench:bench-signing-secret-0001"}

    def vcdn_cmd(port: int, workers: int) -> list[str]:
        return [py, "-m", "vcdn.cli", "steering", "--control", control.url, "--zone",
                "cdn.example.", "--dns-port", str(port), "--http-port", "0", "--geoip-city",
                str(CITY), "--geoip-asn", str(ASN), "--default-site", "site0",
                "--workers", str(workers)]

    def gdnsd_cmd(port: int, threads: int) -> list[str]:
        root = gdnsd.write_config(tmp / f"gdnsd-{port}", port, CITY, threads)
        return ["gdnsd", "-c", str(root), "start"]

    def series(server: str, qfile: Path, warm: Path, workers: int = 1,
               rate: int | None = None, cpus: str = str(SERVER_CPU),
               loadgen: str | None = None) -> list[Measured]:
        out = []
        for i in range(args.repeat):
            port = free_port(socket.SOCK_DGRAM)
            if server == "vcdn":
                cmd, check, e = vcdn_cmd(port, workers), check_vcdn, env
            else:
                cmd, check, e = gdnsd_cmd(port, workers), gdnsd_checker, None
            m = measure(f"{server} x{workers}", cmd, port, qfile, warm, args.seconds,
                        samples, check, server_cpus=cpus, loadgen_cpus=loadgen, rate=rate,
                        env=e, log=tmp / f"{server}-{port}-{i}.log")
            s = m.sampler
            r = m.result
            print(f"  {qfile.stem:<9} {r.name:<9} {r.qps:>9.0f} q/s answered, "
                  f"lost {r.lost}/{r.sent}, p99 {r.p99_ms} ms, sampled "
                  f"{s.ok} ok {s.wrong} wrong {s.timeouts} timed out; server CPU "
                  f"{r.server_pct:.0f}% ({r.server_us_per_query:.2f} us/query), dnsperf CPU "
                  f"{r.loadgen_pct:.0f}%", flush=True)
            out.append(m)
        return out

    def case(name: str, ours: list[Measured], theirs: list[Measured], target: str,
             notes: str, title: str) -> None:
        wrong = sum(m.sampler.wrong for m in ours + theirs)
        unchecked = any(m.sampler.ok == 0 for m in ours + theirs)
        run.case(name, ours={"qps": [m.result.qps for m in ours],
                             "lost": [m.result.lost for m in ours], **cpu_of(ours)},
                 theirs={"qps": [m.result.qps for m in theirs],
                         "lost": [m.result.lost for m in theirs], **cpu_of(theirs)},
                 server="gdnsd", ratio_of="qps", target=target, errors=wrong,
                 correct=wrong == 0 and not unchecked, unit="queries/s", notes=notes,
                 title=title, sampled={
                     "ours": [vars_of(m.sampler) for m in ours],
                     "theirs": [vars_of(m.sampler) for m in theirs]})

    def per_core(name: str, ours: list[Measured], theirs: list[Measured], target: str,
                 title: str) -> None:
        """The same runs as capacity per core: answered queries per CPU second of the
        server. A q/s ratio compares what the load generator could drive when it, not
        the server, is the limit (one dnsperf on one core tops out near gdnsd's rate:
        gdnsd then idles part of its core and looks slower than it is)."""
        wrong = sum(m.sampler.wrong for m in ours + theirs)
        bound = [m for m in theirs if m.result.server_pct < SATURATED_PCT]
        run.case(name, ours={"queries_per_cpu_s": [per_cpu_s(m) for m in ours]},
                 theirs={"queries_per_cpu_s": [per_cpu_s(m) for m in theirs]},
                 server="gdnsd", ratio_of="queries_per_cpu_s", target=target, errors=wrong,
                 correct=wrong == 0, unit="queries per CPU second", title=title,
                 notes="answered queries / server CPU seconds in the same runs; "
                 f"gdnsd below {SATURATED_PCT:g}% of its core (load-generator bound) in "
                 f"{len(bound)} of {len(theirs)} runs")

    try:
        g_un = series("gdnsd", uncached, cached)
        v_un = series("vcdn", uncached, cached)
        case("uncached", v_un, g_un, ">= 0.5", "every query a new /24 (/48), 0x20 names; "
             "one core each", "Steering DNS, uncached (headline), 1 core")
        per_core("uncached_per_core", v_un, g_un, ">= 0.5",
                 "Steering DNS, uncached, queries per CPU second")
        g_ca = series("gdnsd", cached, cached)
        v_ca = series("vcdn", cached, cached)
        case("cached", v_ca, g_ca, ">= 0.8", "2,000 /24s repeated byte for byte: vcdn's "
             "exact-bytes cache; one core each", "Steering DNS, cached, 1 core")
        half = max(100, int(statistics.median(m.result.qps for m in v_un) / 2))
        v_half = series("vcdn", uncached, cached, rate=half)
        g_half = series("gdnsd", uncached, cached, rate=half)
        wrong = sum(m.sampler.wrong for m in v_half)
        run.case("uncached_p99_half_load",
                 ours={"p99_ms": [m.result.p99_ms or float("nan") for m in v_half],
                       "lost": [m.result.lost for m in v_half]},
                 theirs={"p99_ms": [m.result.p99_ms or float("nan") for m in g_half],
                         "lost": [m.result.lost for m in g_half]},
                 server="gdnsd", ratio_of="p99_ms", target="< 2", target_of="p99_ms",
                 errors=wrong + sum(m.result.lost for m in v_half), correct=wrong == 0,
                 unit="ms", notes=f"uncached mix at {half} q/s, half vcdn's maximum; "
                 "gdnsd at the same rate; lost queries count as errors",
                 title="Steering DNS, uncached p99 at half load")
        both = f"{LOADGEN_CPU},{SERVER_CPU}"
        g_2 = series("gdnsd", uncached, cached, workers=2, cpus=both, loadgen=both)
        v_2 = series("vcdn", uncached, cached, workers=2, cpus=both, loadgen=both)
        case("uncached_2_workers", v_2, g_2, ">= 0.5", "vcdn --workers 2 vs gdnsd "
             "udp_threads 2 on CPUs 0-1, dnsperf sharing them",
             "Steering DNS, uncached, 2 workers vs 2 threads")
    finally:
        control.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if args.compile_prefixes:
        t = compile_time(prefixes=args.compile_prefixes)
        print(f"compile: {t}", flush=True)
        run.case("compile_1000_appliances", ours={k: [v] for k, v in t.items()},
                 unit="ms", title=f"Steering view + compiled mapping, 1,000 appliances, "
                 f"{args.compile_prefixes} prefixes",
                 notes="tables: stage 1 (prefixes, MaxMind), rebuilt when they change; "
                 "plans: stage 2; reload_*: a load change, stage 1 reused; "
                 "prefix_change_view: one appliance's prefixes changed")
    path = run.save()
    print(f"wrote {path}")
    return 0 if all(c.valid for c in run.cases) else 1


def vars_of(s: Sampler) -> dict[str, int]:
    return {"sent": s.sent, "ok": s.ok, "wrong": s.wrong, "timeouts": s.timeouts}


if __name__ == "__main__":
    sys.exit(main())
