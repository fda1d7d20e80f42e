"""The edge's HTTPS hits against nginx HTTPS, same run (part of `python -m bench.tls`).

Both serve the files of `bench.edge.content` over HTTPS with the same P-256 certificate
and the same policy (TLS 1.2/1.3, the same suites: the negotiated cipher is checked to be
the same before measuring), one worker each, pinned to core 0; wrk (1 thread, keep-alive)
on core 1. The edge runs as `vcdn edge --tls-port` in front of `vcdn origin` (on core 1,
idle once the cache is warm), so what is measured is its hit protocol over TLS. During
every run `bench.edge.check.Sampler` fetches a sample of the same requests over its own
HTTPS connection and compares sha256 of each body with the file; a case with errors or
one wrong byte records no ratio (`bench.record`). CPU per request is the server's process
time over the run (from /proc), for both.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.edge import content, wrk
from bench.edge.check import Sampler
from bench.edge.targets import LOAD_CPU, REPO, SERVER_CPU
from bench.nginxconf import static_conf, video_server
from bench.procstat import cpu_seconds
from bench.record import Run
from onebox import localca
from onebox.procs import free_port
from vcdn.tls import INTERMEDIATE_CIPHERS

CASES: Final = ("16k", "2m", "range_unaligned", "playlist")
#: The issue's targets (req/s ratio to nginx HTTPS); ranges are measured without one.
TARGETS: Final = {"2m": ">= 0.7", "16k": ">= 0.35", "playlist": ">= 0.35"}

#: Inside the HTTPS server block: the same certificate, policy and tickets as the edge.
NGINX_TLS: Final = """\
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers {ciphers};
        ssl_session_tickets on;
        location /healthz {{ return 200 "ok\\n"; }}"""


@dataclass
class Server:
    name: str
    url_prefix: str  # + "{title}/{path}"
    procs: list[subprocess.Popen[bytes]]

    @property
    def pid(self) -> int:
        return self.procs[-1].pid

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _popen(cmd: list[str], cpu: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(["taskset", "-c", cpu, *cmd], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _wait(url: str, ctx: ssl.SSLContext | None, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench.tls: {proc.args} did not answer {url}.")
        time.sleep(0.1)


def start(work: Path, root: Path, ca: localca.LocalCA, ctx: ssl.SSLContext) -> list[Server]:
    port = free_port()
    tls = NGINX_TLS.format(cert=ca.cert, key=ca.key, ciphers=INTERMEDIATE_CIPHERS)
    (work / "nginx-hits.conf").write_text(
        static_conf(work, "nginx-hits", video_server(root, f"127.0.0.1:{port} ssl", tls)))
    nginx = _popen(["nginx", "-c", str(work / "nginx-hits.conf"), "-p", str(work)], SERVER_CPU,
                   work / "nginx-hits.log")
    servers = [Server("nginx", f"https://127.0.0.1:{port}/v/", [nginx])]
    _wait(f"https://127.0.0.1:{port}/healthz", ctx, nginx)
    o, plain, tls = free_port(), free_port(), free_port()
    py = [sys.executable, "-m", "vcdn.cli"]
    origin = _popen([*py, "origin", "--root", str(root), "--port", str(o), "--log-level",
                     "warning"], LOAD_CPU, work / "origin-hits.log")
    _wait(f"http://127.0.0.1:{o}/healthz", None, origin)
    edge = _popen([*py, "edge", "--cache-dir", str(work / "edge-cache"), "--capacity", "2GiB",
                   "--upstream", f"http://127.0.0.1:{o}", "--auth", "none", "--mode",
                   "appliance", "--port", str(plain), "--tls-port", str(tls), "--tls-cert",
                   str(ca.cert), "--tls-key", str(ca.key), "--workers", "1", "--log-level",
                   "warning"], SERVER_CPU, work / "edge-hits.log")
    servers.append(Server("edge", f"https://127.0.0.1:{tls}/v/", [origin, edge]))
    _wait(f"https://127.0.0.1:{tls}/healthz", ctx, edge)
    return servers


def negotiated(server: Server, ctx: ssl.SSLContext) -> str:
    """The TLS version and cipher a default client gets (the same for both, or no run)."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(server.url_prefix)
    conn = http.client.HTTPSConnection(u.hostname or "", u.port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        version, cipher = sock.version(), (sock.cipher() or ("?",))[0]
    finally:
        conn.close()
    return f"{version} {cipher}"


def warm(server: Server, case: content.Case, ctx: ssl.SSLContext) -> None:
    """Every object fetched twice (an edge fills on the first), then a 1 s wrk warm-up."""
    for path in case.paths:
        for _ in range(2):
            with urllib.request.urlopen(f"{server.url_prefix}{content.TITLE}/{path}",
                                        context=ctx, timeout=20) as resp:
                resp.read()


def measure(server: Server, case: content.Case, root: Path, ctx: ssl.SSLContext,
            seconds: float, connections: int, work: Path, seed: int) -> dict[str, float]:
    cpu0 = cpu_seconds(server.pid)
    with Sampler(server.url_prefix, case, root, seed=seed, ssl_context=ctx) as sampler:
        res = wrk.run(server.url_prefix, case, seconds=seconds, connections=connections,
                      work=work)
    cpu = cpu_seconds(server.pid) - cpu0
    r = {"rps": res.rps, "mbps": res.mbps, "p99_ms": res.p99_us / 1000,
         "cpu_us_per_req": cpu / max(res.requests, 1) * 1e6,
         "errors": res.errors + res.status_errors, "requests": res.requests,
         "checks": sampler.checks, "bad_bytes": len(sampler.failures)}
    for failure in sampler.failures[:3]:
        print(f"  {server.name} {case.name}: WRONG BYTES {failure}", flush=True)
    print(f"  https {server.name:6} {case.name:16} {r['rps']:9.0f} req/s {r['mbps']:8.1f} MB/s "
          f"cpu {r['cpu_us_per_req']:7.1f} us/req  errors {r['errors']:.0f}  "
          f"checked {sampler.checks} ({len(sampler.failures)} bad)", flush=True)
    return r


def run_hits(run: Run, work: Path, ca: localca.LocalCA, *, seconds: float, rounds: int,
             connections: int, cases: tuple[str, ...] = CASES) -> None:
    """Measure the hit cases and record one `hit_*` case each into `run`."""
    root = work / "hits-root"
    wanted = [c for c in content.build(root) if c.name in cases]
    ctx = ssl.create_default_context(cafile=str(ca.ca_cert))
    servers = start(work, root, ca, ctx)
    try:
        ciphers = {s.name: negotiated(s, ctx) for s in servers}
        if len(set(ciphers.values())) != 1:
            raise SystemExit(f"bench.tls: the servers negotiate different TLS: {ciphers}")
        tls = next(iter(ciphers.values()))
        print(f"bench.tls hits: {tls}, wrk -t1 -c{connections}, {rounds} x {seconds:g} s, "
              "servers on CPU 0, wrk on CPU 1", flush=True)
        for case in wanted:
            for s in servers:
                warm(s, case, ctx)
                wrk.run(s.url_prefix, case, seconds=1, connections=connections, work=work)
            got: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
            for rnd in range(rounds):
                for s in servers:
                    got[s.name].append(measure(s, case, root, ctx, seconds, connections, work,
                                               seed=rnd + 1))
            ours, theirs = got["edge"], got["nginx"]
            metrics = ("rps", "mbps", "p99_ms", "cpu_us_per_req")
            both = ours + theirs
            checks = int(sum(r["checks"] for r in both))
            wrong = int(sum(r["bad_bytes"] for r in both))
            run.case(
                f"hit_{case.name}",
                ours={m: [r[m] for r in ours] for m in metrics},
                theirs={m: [r[m] for r in theirs] for m in metrics},
                server="nginx", ratio_of="rps", target=TARGETS.get(case.name),
                errors=int(sum(r["errors"] for r in both)), correct=checks > 0 and wrong == 0,
                unit="req/s", title=f"HTTPS hits: {case.description}",
                notes=f"{tls}; wrk -t1 -c{connections} keep-alive, {rounds} x {seconds:g} s; "
                      f"{checks} bodies sha256-checked during the runs; cpu_us_per_req = "
                      "server CPU per request",
                checks=checks, wrong_bytes=wrong, tls=tls)
    finally:
        for s in servers:
            s.stop()
