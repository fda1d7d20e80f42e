"""`python -m bench.tls`: TLS handshakes/s and HTTPS hits, vcdn against nginx, same run.

Both serve HTTPS with the same certificate (a P-256 chain from `onebox.localca`), TLS 1.2
and 1.3 only, one worker, pinned to core 0; `openssl s_time` (one connection at a time,
on core 1) opens connections for `--seconds` and fetches ``/healthz`` on each:

* ``full``: every connection a full handshake (``-new``);
* ``resumed``: every connection resumes the first one's session (``-reuse``: a TLS 1.3
  ticket or a TLS 1.2 ticket).

Same work on both sides, checked before each version's cases and counted in each run: the
client offers one suite (`SUITES`), and ``openssl s_client`` must see both servers
negotiate it; both must resume by ticket and only by ticket (a TLS 1.2 session offered
without its ticket is a full handshake on both: neither resumes from a server-side
session cache); and s_time's per-connection marks (``r`` resumed, ``*`` new) must say
every connection of a resumed run resumed and none of a full run did, else the case
records no ratio.

For each TLS version and mode, rounds alternate between the two servers (median kept);
we print handshakes/s, the server's CPU time per handshake (from /proc) and the ratio to
nginx. Then the edge's HTTPS hits (`bench.tls.hits`): `vcdn edge --tls-port` against
nginx HTTPS for 16 KiB and 2 MiB objects, 64 KiB ranges at an unaligned offset of 2 MiB
objects and playlists, keep-alive, bodies sha256-checked under load, CPU per request.

    python -m bench.tls                       # 3 rounds x 3 s per case
    python -m bench.tls --seconds 2 --rounds 1 --versions 1.3
    python -m bench.tls --parts hits --cases 2m,16k
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.procstat import cpu_seconds
from bench.record import Run
from bench.tls import hits
from onebox import localca
from onebox.procs import free_port
from vcdn.tls_io import client_context

#: The issue's target for resumed handshakes; full handshakes are shown without one (the
#: hit cases' targets are in `bench.tls.hits`).
TARGETS = {"resumed": ">= 0.5"}
_DONE = re.compile(r"(\d+) connections in \d+ real seconds")
#: The one suite the client offers per version, so that both servers run the same one
#: (ours prefers its own order, nginx the client's: left alone they picked AES-128 and
#: AES-256 for TLS 1.2). AES-256-GCM, as in the hit cases.
SUITES = {"1.2": ("-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"),
          "1.3": ("-ciphersuites", "TLS_AES_256_GCM_SHA384")}
_MARKS = re.compile(r"starting\n([r*t3]*)", re.S)

NGINX_CONF = """worker_processes 1;
daemon off;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {ciphers};
    ssl_session_tickets on;
    location /healthz {{ return 200 "ok\\n"; }}
  }}
}}
"""


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]


@dataclass
class Sample:
    handshakes_per_s: float
    cpu_ms_per_handshake: float
    connections: int
    resumed: int  # connections s_time marked as resumed (``r``)


@dataclass(frozen=True)
class Negotiated:
    """What one server agreed to with the benchmark's client offer."""

    cipher: str
    resumes_by_ticket: bool
    resumes_by_session_id: bool  # TLS 1.2: from a server-side cache, without the ticket


def _version_flag(version: str) -> str:
    return f"-tls{version.replace('.', '_')}"


def _s_client(server: Server, ca: Path, version: str, *extra: str) -> str:
    request = "GET /healthz HTTP/1.0\r\n\r\n"
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", _version_flag(version),
         *SUITES[version], "-CAfile", str(ca), "-ign_eof", *extra],
        input=request, capture_output=True, text=True, timeout=20, check=False)
    return done.stdout


def negotiated(server: Server, ca: Path, version: str, work: Path) -> Negotiated:
    """The suite and the resumption mechanisms `server` uses with our client offer."""
    session = work / f"session-{server.name}-{version}"
    session.unlink(missing_ok=True)
    out = _s_client(server, ca, version, "-sess_out", str(session))
    found = re.search(r"New, TLSv1\.\d, Cipher is (\S+)", out)
    if found is None or not session.exists():
        raise SystemExit(f"bench.tls: no TLS {version} handshake with {server.name}: "
                         f"{out[-400:]}")
    by_ticket = "Reused, " in _s_client(server, ca, version, "-sess_in", str(session))
    by_id = version == "1.2" and "Reused, " in _s_client(
        server, ca, version, "-sess_in", str(session), "-no_ticket")
    return Negotiated(found.group(1), by_ticket, by_id)


def _wait(port: int, ca: Path, proc: subprocess.Popen[bytes], name: str) -> None:
    ctx = client_context(ca)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx,
                                        timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"bench.tls: {name} did not start on port {port}.")
        time.sleep(0.1)


def start_servers(work: Path, ca: localca.LocalCA) -> list[Server]:
    from vcdn.tls import INTERMEDIATE_CIPHERS

    servers = []
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=work, port=port, cert=ca.cert, key=ca.key,
                                      ciphers=INTERMEDIATE_CIPHERS))
    nginx = subprocess.Popen(["taskset", "-c", "0", "nginx", "-c", str(conf), "-p", str(work)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers.append(Server("nginx", port, nginx))
    port = free_port()
    (work / "root").mkdir()
    origin = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-m", "vcdn.cli", "origin", "--root",
         str(work / "root"), "--port", str(port), "--tls-cert", str(ca.cert), "--tls-key",
         str(ca.key), "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    servers.append(Server("origin", port, origin))
    for s in servers:
        _wait(s.port, ca.ca_cert, s.proc, s.name)
    return servers


def s_time(server: Server, ca: Path, mode: str, version: str, seconds: int) -> Sample:
    before = cpu_seconds(server.proc.pid)
    started = time.monotonic()
    done = subprocess.run(
        ["taskset", "-c", "1", "openssl", "s_time", "-connect", f"127.0.0.1:{server.port}",
         "-new" if mode == "full" else "-reuse", _version_flag(version), *SUITES[version],
         "-CAfile", str(ca), "-verify", "1", "-time", str(seconds), "-www", "/healthz"],
        capture_output=True, text=True, timeout=seconds + 30, check=False)
    wall = time.monotonic() - started
    cpu = cpu_seconds(server.proc.pid) - before
    found = _DONE.search(done.stdout)
    if done.returncode != 0 or found is None or "ERROR" in done.stdout:
        raise SystemExit(f"bench.tls: s_time against {server.name} failed: "
                         f"{(done.stdout + done.stderr)[-400:]}")
    # s_time's own "real seconds" are whole seconds, and its other rate is per client CPU
    # second: the wall time around the run (start-up included) is the rate a client sees.
    connections = int(found.group(1))
    marks = _MARKS.search(done.stdout)
    resumed = marks.group(1).count("r") if marks else 0
    return Sample(connections / wall, 1000 * cpu / max(connections, 1), connections, resumed)


def same_work(samples: list[Sample], mode: str) -> bool:
    """Every connection of a resumed run resumed, none of a full run did."""
    want = (lambda x: x.connections) if mode == "resumed" else (lambda x: 0)
    return all(x.connections > 0 and x.resumed == want(x) for x in samples)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tls", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=int, default=3, help="seconds per s_time run")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per case")
    p.add_argument("--versions", default="1.3,1.2", help="TLS versions, e.g. 1.3,1.2")
    p.add_argument("--parts", default="handshakes,hits", help="handshakes, hits or both")
    p.add_argument("--cases", default=",".join(hits.CASES), help="hit cases")
    p.add_argument("--connections", type=int, default=8, help="wrk connections (hits)")
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))
    if not 1 <= args.seconds <= 60 or not 1 <= args.rounds <= 10:
        p.error("--seconds must be 1-60 and --rounds 1-10")
    for tool in ("nginx", "openssl", "taskset", *(("wrk",) if "hits" in parts else ())):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench.tls needs {tool}; `make bench-tools` installs it.")
    run = Run("tls", settings=vars(args))
    with tempfile.TemporaryDirectory(prefix="vcdn-bench-tls-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx workers run as nobody
        ca = localca.ensure(work / "ca", ["127.0.0.1", "localhost"])
        servers = start_servers(work, ca) if "handshakes" in parts else []
        try:
            for version in args.versions.split(",") if servers else ():
                seen = {s.name: negotiated(s, ca.ca_cert, version, work) for s in servers}
                print(f"TLS {version}: " + "; ".join(f"{name} {n}" for name, n in seen.items()),
                      flush=True)
                agree = len(set(seen.values())) == 1 and seen["nginx"].resumes_by_ticket
                for mode in ("full", "resumed"):
                    got: dict[str, list[Sample]] = {s.name: [] for s in servers}
                    for _ in range(args.rounds):
                        for s in servers:
                            got[s.name].append(s_time(s, ca.ca_cert, mode, version,
                                                      args.seconds))
                    ours, theirs = got["origin"], got["nginx"]
                    fair = agree and same_work(ours + theirs, mode)
                    run.case(
                        f"{mode}_tls{version.replace('.', '')}",
                        ours={"hs_per_s": [x.handshakes_per_s for x in ours],
                              "cpu_ms": [x.cpu_ms_per_handshake for x in ours]},
                        theirs={"hs_per_s": [x.handshakes_per_s for x in theirs],
                                "cpu_ms": [x.cpu_ms_per_handshake for x in theirs]},
                        server="nginx", ratio_of="hs_per_s", target=TARGETS.get(mode),
                        unit="handshakes/s",
                        notes=f"TLS {version} {seen['nginx'].cipher}, {mode} handshakes "
                              f"(resumed: ours {[x.resumed for x in ours]} of "
                              f"{[x.connections for x in ours]}, nginx "
                              f"{[x.resumed for x in theirs]} of "
                              f"{[x.connections for x in theirs]}), openssl s_time, one "
                              "connection at a time; cpu_ms = server CPU per handshake"
                              + ("" if fair else "; NOT COMPARABLE: the servers negotiated "
                                 "or resumed differently"),
                        correct=fair,
                    )
        finally:
            for s in servers:
                s.proc.terminate()
                try:
                    s.proc.wait(10)
                except subprocess.TimeoutExpired:
                    s.proc.kill()
        if "hits" in parts:
            hits.run_hits(run, work, ca, seconds=args.seconds, rounds=args.rounds,
                          connections=args.connections, cases=tuple(args.cases.split(",")))
    run.save()
    return 0 if all(c.valid for c in run.cases) else 1


if __name__ == "__main__":
    sys.exit(main())
