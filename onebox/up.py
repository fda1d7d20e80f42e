"""`vcdn up`: the whole CDN on this machine, a title played through it, and a summary.

    vcdn up [--appliances N] [--exit-after-play] [--data DIR] [--base-port P]

Steps: start control and origin; package a generated sample title (unless the origin
already holds it) and register it; start steering (DNS + HTTP) and N appliances in two
sites; let the appliances fill the title (fill-now); ask steering for playback URLs and
play the first with ffmpeg, then read every segment of one rendition with the failover
HLS client, checking each against the title's sha256s; print what served it. Then keep
running until Ctrl-C or SIGTERM, which stop every process started here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any, Final

import aiohttp

from onebox import acmeserver
from onebox.cluster import DEMO_NAME, Cluster, ClusterConfig
from onebox.demo import (
    DEMO_TITLE,
    PlayOutcome,
    dns_answer,
    ensure_title,
    fill_title,
    play_title,
    register,
    scrape_appliances,
    wait_for_fleet,
    wait_live,
)
from onebox.summary import render_summary
from vcdn.errors import VcdnError
from vcdn.tls_io import client_connector

LIVE_TITLE: Final = "live"

MAX_APPLIANCES: Final = 20


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="vcdn up",
        description="Run the whole CDN on this machine (control, origin, steering, appliances "
        "in two sites), package and fill a sample title, play it through the CDN and print "
        "a summary. Stops every service on Ctrl-C.",
    )
    p.add_argument("--appliances", type=int, default=3, help="number of appliances (default 3)")
    p.add_argument(
        "--exit-after-play", action="store_true",
        help="stop everything after the summary; exit 0 only if the title played",
    )
    p.add_argument("--data", type=Path, default=Path("data"), help="state directory (./data)")
    p.add_argument(
        "--base-port", type=int, default=0,
        help="use consecutive ports from P (default: free ports picked at start)",
    )
    p.add_argument("--title", default=DEMO_TITLE, help=f"title id to play (default {DEMO_TITLE})")
    p.add_argument(
        "--source", type=Path,
        help="package this video instead of generating a test pattern",
    )
    p.add_argument(
        "--duration", type=float, default=30.0, help="seconds of generated sample (default 30)"
    )
    p.add_argument(
        "--heartbeat-interval", type=float, default=2.0, help="appliance heartbeat period (s)"
    )
    p.add_argument(
        "--live", action="store_true",
        help=f"also run a live test-pattern event ('{LIVE_TITLE}') through the CDN",
    )
    p.add_argument(
        "--low-latency", action="store_true",
        help="make the live event low-latency HLS (parts, blocking playlist reload)",
    )
    p.add_argument("--json", type=Path, help="also write the summary as JSON to this file")
    p.add_argument(
        "--tls", action="store_true",
        help="HTTPS for control, origin, steering and the appliances' admin API with a local "
        "CA (DATA/tls/ca.pem) that every client verifies, and video over HTTPS from the "
        "appliances, whose certificates come by ACME from a local pebble when it is installed",
    )
    args = p.parse_args(argv)
    if not 1 <= args.appliances <= MAX_APPLIANCES:
        p.error(f"--appliances must be between 1 and {MAX_APPLIANCES}")
    if args.base_port and not 1024 <= args.base_port <= 65000:
        p.error("--base-port must be between 1024 and 65000")
    if not 2 <= args.duration <= 600:
        p.error("--duration must be between 2 and 600 seconds")
    if args.heartbeat_interval <= 0:
        p.error("--heartbeat-interval must be positive")
    if args.low_latency and not args.live:
        p.error("--low-latency needs --live")
    return args


def say(text: str) -> None:
    print(f"vcdn up: {text}", flush=True)


def check_tools() -> None:
    missing = [t for t in ("ffmpeg", "ffprobe") if shutil.which(t) is None]
    if missing:
        raise VcdnError(
            f"{' and '.join(missing)} not found; install it (Debian: apt-get install ffmpeg) "
            "or run `make demo`, which installs it."
        )


async def bring_up(
    cluster: Cluster, args: argparse.Namespace
) -> tuple[PlayOutcome, dict[str, Any]]:
    """Everything up to and including the summary; raises VcdnError on the first failure."""
    started = time.monotonic()
    say(f"state in {cluster.data}, service logs in {cluster.logs}/")
    say("starting control, origin, steering and "
        f"{len(cluster.slots)} appliances ({', '.join(f'{s.id}@{s.site}' for s in cluster.slots)})")
    cluster.logs.mkdir(parents=True, exist_ok=True)
    packaging = asyncio.create_task(
        ensure_title(cluster, args.title, source=args.source, duration=args.duration, say=say)
    )
    try:
        await cluster.start()
    except BaseException:
        packaging.cancel()
        with contextlib.suppress(BaseException):
            await packaging
        raise
    say(f"services up in {time.monotonic() - started:.1f} s")
    if cluster.ca is not None:
        say(f"TLS: control, origin, steering and the appliances' admin API over HTTPS, "
            f"verified against the local CA {cluster.ca.ca_cert}; the appliances serve "
            "video over HTTPS too (and plain HTTP for peers and HTTP-01)")
        if cluster.acme is not None:
            say(f"TLS: the appliances' certificates came from ACME (pebble at "
                f"{cluster.acme_directory}, HTTP-01); every client trusts {cluster.ca_bundle} "
                "(the local CA plus pebble's root)")
        else:
            say("TLS: pebble (the ACME test server) not found, so the appliances' "
                "certificates come straight from the local CA; `make demo` installs it")
    manifest = await packaging
    async with aiohttp.ClientSession(connector=client_connector(cluster.ca_bundle)) as session:
        await register(session, cluster, args.title)
        await wait_for_fleet(session, cluster, say=say)
        await fill_title(session, cluster, manifest, say=say)
        outcome = await play_title(session, cluster, manifest, say=say)
        if args.live:
            kind = "low-latency parts of 0.333 s" if args.low_latency else "2 s segments"
            say(f"starting the live event '{LIVE_TITLE}' (a test pattern, {kind})")
            await cluster.start_live(LIVE_TITLE, low_latency=args.low_latency)
            await wait_live(session, cluster, LIVE_TITLE, say=say)
        scraped = await scrape_appliances(session, cluster)
    dig = await dns_answer(cluster, DEMO_NAME)
    data = {
        "title": args.title,
        "elapsed_s": round(time.monotonic() - started, 1),
        "play": outcome.as_dict(),
        "appliances": scraped,
        "dns": dig,
        "pages": pages(cluster, args.title),
        "tls": tls_line(cluster),
        "listeners": cluster.listeners(),
    }
    if args.live:
        data["pages"]["live_player"] = pages(cluster, LIVE_TITLE)["player"] + (
            "&latency=low" if args.low_latency else ""
        )
    return outcome, data


def tls_line(cluster: Cluster) -> str:
    """Where the HTTPS certificates came from and what to trust ("" without --tls)."""
    if cluster.ca is None:
        return ""
    if cluster.acme is not None:
        return (f"appliance certificates came from ACME (pebble, HTTP-01); trust "
                f"{cluster.ca_bundle} (local CA + pebble's root)")
    return f"appliance certificates from the local CA; trust {cluster.ca_bundle}"


def pages(cluster: Cluster, title: str) -> dict[str, str]:
    return {
        "player": f"{cluster.control_url}/player?title={title}&steering={cluster.steering_url}",
        "dashboard": f"{cluster.control_url}/dashboard#token={cluster.secrets.operator}",
        "playback_api": f"{cluster.steering_url}/v1/playback/{title}",
        "control_api": f"{cluster.control_url}/api/v1/openapi.json",
    }


def lock_data(data: Path) -> IO[str]:
    """One `vcdn up` per state directory: two would share a database and caches."""
    data.mkdir(parents=True, exist_ok=True)
    handle = open(data / ".vcdn-up.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise VcdnError(
            f"Another `vcdn up` is running with '{data}'; stop it, or pass --data DIR."
        ) from None
    return handle


async def run(args: argparse.Namespace) -> int:
    check_tools()
    lock = lock_data(args.data)
    cluster = Cluster(
        ClusterConfig(
            data=args.data,
            appliances=args.appliances,
            base_port=args.base_port,
            heartbeat_interval=args.heartbeat_interval,
            tls=args.tls,
            acme=args.tls and acmeserver.available(),
        )
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        if not interrupted and not stop.is_set():
            interrupted = True
            stop.set()
            if main_task is not None and not waiting_for_stop:
                main_task.cancel()

    waiting_for_stop = False
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    code = 1
    try:
        outcome, data = await bring_up(cluster, args)
        print(render_summary(data), flush=True)
        if args.json:
            args.json.write_text(json.dumps(data, indent=2))
        code = 0 if outcome.ok else 1
        if args.exit_after_play or not outcome.ok:
            return code
        say("running; press Ctrl-C to stop every service")
        waiting_for_stop = True
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
            for dead in cluster.dead():
                say(f"{dead.name} exited unexpectedly; see {dead.log_path}")
                return 1
        return 0
    except asyncio.CancelledError:
        say("interrupted")
        return 130
    except VcdnError as exc:
        print(f"vcdn up: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        say("stopping every service")
        await asyncio.shield(cluster.stop())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        lock.close()
        say("stopped")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(run(args))
    return uvloop.run(run(args))
