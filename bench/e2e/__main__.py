"""`python -m bench.e2e [--clients 8] [--seconds 10]`: players through vcdn vs nginx.

Both sides are played by the same client (`onebox.hlsclient`, every byte sha256-checked
against manifest.json), so the ratio compares the servers under a real player's request
pattern (master, media playlist, init, segments; keep-alive), not a synthetic loop. The
vcdn side is the full path a viewer takes: a playback request to steering, then the signed
URL on the appliance, whose cache holds the title (filled first). nginx serves the
origin's directory directly with sendfile, the established baseline. Loopback only;
bounded by --seconds per side.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp

from bench.record import Run
from onebox.cluster import Cluster, ClusterConfig
from onebox.demo import (
    fill_title,
    make_sample,
    playback_urls,
    read_manifest,
    register,
    wait_for_fleet,
)
from onebox.hlsclient import FailoverClient
from onebox.procs import Proc, free_port, vcdn_argv

TITLE: Final = "bench"
NGINX_CONF: Final = """\
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp;
    uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp4 mp4 m4s; }}
    server {{
        listen 127.0.0.1:{port};
        location /v/ {{ alias {root}/; }}
    }}
}}
"""


@dataclass
class Side:
    name: str
    plays: int = 0
    fetches: int = 0
    bytes: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000

    @property
    def per_s(self) -> float:
        return self.fetches / self.seconds if self.seconds else 0.0

    @property
    def mb_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


async def drive(side: Side, get_urls, expected: dict[str, str], clients: int,
                seconds: float) -> Side:
    """`clients` players, each playing the title again and again for `seconds`."""
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def player(n: int) -> None:
            # Odd players take the top rendition, even ones the lowest: the same mix both sides.
            rendition = None if n % 2 else -1
            while time.monotonic() < deadline:
                urls = await get_urls(session)
                report = await FailoverClient(session, urls, expected=expected).play(rendition)
                side.plays += 1
                side.failed += len(report.failed)
                for f in report.fetches:
                    side.fetches += 1
                    side.bytes += f.size
                    side.latencies.append(f.seconds)

        t0 = time.monotonic()
        await asyncio.gather(*(player(n) for n in range(clients)))
        side.seconds = time.monotonic() - t0
    return side


def package(work: Path) -> Path:
    root = work / "origin"
    source = work / "source.mp4"
    asyncio.run(make_sample(source, 20, "1280x720", rate=30))
    subprocess.run(
        vcdn_argv("package", str(source), "--title", TITLE, "--ladder", "720,360",
                  "--segment-seconds", "2", "--origin-root", str(root), "-q"),
        check=True,
    )
    return root


async def run(args: argparse.Namespace, work: Path, root: Path) -> tuple[Side, Side]:
    manifest = read_manifest(root, TITLE)
    assert manifest is not None
    expected = {f.path: f.sha256 for f in manifest.files}
    data = work / "cluster"
    shutil.copytree(root, data / "origin")
    cluster = Cluster(ClusterConfig(data=data, appliances=1, heartbeat_interval=1.0))
    nginx_port = free_port()
    (work / "nginx" / "tmp").mkdir(parents=True)
    conf = work / "nginx" / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work / "nginx", port=nginx_port, root=root))
    nginx = Proc(
        "nginx", ["nginx", "-c", str(conf), "-p", str(work / "nginx")],
        log_path=work / "nginx.log",
        health_url=f"http://127.0.0.1:{nginx_port}/v/{TITLE}/manifest.json",
    )
    try:
        await nginx.start()
        await nginx.wait_healthy()
        await cluster.start()
        async with aiohttp.ClientSession() as session:
            await register(session, cluster, TITLE)
            await wait_for_fleet(session, cluster)
            await fill_title(session, cluster, manifest)

        async def steered(session: aiohttp.ClientSession) -> list[str]:
            return await playback_urls(session, cluster.steering_url, TITLE)

        async def direct(session: aiohttp.ClientSession) -> list[str]:
            return [f"http://127.0.0.1:{nginx_port}/v/{TITLE}/master.m3u8"]

        vcdn = await drive(Side("vcdn (steering + appliance)"), steered, expected,
                           args.clients, args.seconds)
        base = await drive(Side("nginx (static files)"), direct, expected,
                           args.clients, args.seconds)
        return vcdn, base
    finally:
        await cluster.stop()
        await nginx.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__)
    p.add_argument("--clients", type=int, default=8, help="concurrent players (default 8)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per side (default 10)")
    args = p.parse_args(argv)
    if not 1 <= args.clients <= 256 or not 1 <= args.seconds <= 120:
        p.error("--clients 1..256 and --seconds 1..120")
    if shutil.which("nginx") is None or shutil.which("ffmpeg") is None:
        print("bench.e2e needs nginx and ffmpeg: make bench-tools", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="vcdn-bench-e2e-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's workers run as an unprivileged user and must read it
        print("packaging a 20 s title (720p + 360p, 2 s segments)...", flush=True)
        root = package(work)
        vcdn, base = asyncio.run(run(args, work, root))
    print(f"\n{args.clients} concurrent players, {args.seconds:g} s per side, "
          f"{os.cpu_count()} CPUs shared with the client")
    print(f"{'server':<30} {'plays':>6} {'fetches/s':>10} {'MB/s':>8} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'failed':>7}")
    for s in (vcdn, base):
        print(f"{s.name:<30} {s.plays:>6} {s.per_s:>10.1f} {s.mb_s:>8.1f} {s.pct(0.5):>8.1f} "
              f"{s.pct(0.99):>8.1f} {s.failed:>7}")
    if base.per_s:
        print(f"\nvcdn/nginx: fetches/s {vcdn.per_s / base.per_s:.2f}x, "
              f"MB/s {vcdn.mb_s / base.mb_s:.2f}x, "
              f"p50 latency {vcdn.pct(0.5) / max(base.pct(0.5), 1e-9):.2f}x")
    rec = Run("e2e", settings=vars(args))
    # Every fetched byte is sha256-checked against manifest.json by the client; a failed
    # fetch (wrong bytes or an error) makes the comparison void.
    rec.case("players", ours={"fetches_per_s": vcdn.per_s, "mb_s": vcdn.mb_s,
                              "p50_ms": vcdn.pct(0.5), "p99_ms": vcdn.pct(0.99)},
             theirs={"fetches_per_s": base.per_s, "mb_s": base.mb_s,
                     "p50_ms": base.pct(0.5), "p99_ms": base.pct(0.99)},
             server="nginx", ratio_of="fetches_per_s", errors=vcdn.failed + base.failed,
             correct=vcdn.plays > 0 and base.plays > 0, unit="fetches/s",
             title="players through steering + appliance vs nginx static files",
             notes=f"{args.clients} players, {args.seconds:g} s per side, every byte "
                   f"sha256-checked; plays {vcdn.plays} vs {base.plays}")
    rec.save()
    return 0 if vcdn.failed == 0 and base.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
