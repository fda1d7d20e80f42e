"""`vcdn live SOURCE --title ID --origin URL [--ladder ...] [--segment-seconds 2] [--window 60]`.

Publishes a live event to `vcdn origin` by authenticated PUT. The bearer token (the
packager's) comes from ``VCDN_INGEST_TOKEN``, else ``VCDN_CONTROL_TOKEN``. Exit 0 when the
input ended and the event became a VOD title, 1 on an error the user can fix, 130 when
interrupted (the event stays live for other pipelines).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Final

from packager.cli import (
    _control_url,
    _control_urls,
    _interval,
    _ladder,
    _sigterm_interrupts,
    _title,
)
from packager.graph import PRESETS
from packager.live import LiveRequest, run_live
from packager.livegraph import LiveSource, parse_source_spec
from packager.register import TOKEN_ENV, register
from vcdn.errors import VcdnError
from vcdn.schemas import TitleManifest
from vcdn.settings import env_value

INGEST_TOKEN_ENV: Final = "VCDN_INGEST_TOKEN"
DEFAULT_LADDER: Final = (720, 480, 360)
MIN_SEGMENT_S: Final = 1.0
MAX_SEGMENT_S: Final = 10.0
MIN_PART_S: Final = 0.1
MAX_PART_S: Final = 2.0


def _source(text: str) -> LiveSource:
    try:
        return parse_source_spec(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} s is outside {low:g}..{high:g} s")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vcdn live",
        description="Encode a live input into an HLS ladder and publish it to the origin.",
    )
    p.add_argument(
        "source", metavar="SOURCE", type=_source,
        help="srt://, rtmp://, udp://... URL; lavfi:GRAPH; or a file (paced at real time)",
    )
    p.add_argument("--title", required=True, type=_title, help="title id of the event")
    p.add_argument("--origin", required=True, type=_control_url, metavar="URL",
                   help="the origin to PUT to, e.g. http://127.0.0.1:8080")
    p.add_argument("--ladder", type=_ladder, default=DEFAULT_LADDER, metavar="H,H,...",
                   help="rendition heights (default 720,480,360)")
    p.add_argument("--segment-seconds", type=_seconds(MIN_SEGMENT_S, MAX_SEGMENT_S),
                   default=2.0, metavar="S", help="segment duration (default 2)")
    p.add_argument("--window", type=_seconds(4.0, 6 * 3600.0), default=60.0, metavar="S",
                   help="seconds of the event a live playlist offers (default 60)")
    p.add_argument("--low-latency", action="store_true",
                   help="low-latency HLS: publish parts as they are encoded, blocking "
                   "playlist reload (draft-pantos-hls-rfc8216bis)")
    p.add_argument("--part-seconds", type=_seconds(MIN_PART_S, MAX_PART_S), default=0.333,
                   metavar="S", help="low-latency part duration (default 0.333)")
    p.add_argument("--preset", choices=PRESETS, default="veryfast",
                   help="x264 preset (default veryfast)")
    p.add_argument("--control", type=_control_urls, metavar="URL", action="append",
                   help="register the VOD title with this control API when the input ends "
                   "(repeat, or list comma-separated, for control replicas)")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    p.add_argument("--progress-interval", type=_interval, default=5.0, metavar="S",
                   help="seconds between progress lines (default 5)")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    err, out = sys.stderr, sys.stdout
    token = env_value(INGEST_TOKEN_ENV) or env_value(TOKEN_ENV)
    if not token:
        print(f"vcdn live: the origin needs the packager's bearer token in ${INGEST_TOKEN_ENV} "
              f"(or ${TOKEN_ENV}); nothing was published.", file=err)
        return 1
    if args.window < 2 * args.segment_seconds:
        print("vcdn live: --window must hold at least two segments.", file=err)
        return 2
    if args.low_latency and args.part_seconds * 2 > args.segment_seconds:
        print("vcdn live: --part-seconds must be at most half of --segment-seconds.", file=err)
        return 2
    request = LiveRequest(
        source=args.source, title=args.title, origin=args.origin, token=token,
        heights=args.ladder, segment_seconds=args.segment_seconds, window=args.window,
        preset=args.preset, part_seconds=args.part_seconds if args.low_latency else 0.0,
    )
    def announce(entry: TitleManifest) -> None:
        if not args.control:
            return
        try:
            register(args.control, entry, token)
        except VcdnError as exc:
            print(f"vcdn live: registering the running event failed: {exc}", file=err)
        else:
            if not args.quiet:
                print(f"Registered live event '{args.title}' with the control API.", file=out,
                      flush=True)

    try:
        with _sigterm_interrupts():
            result = run_live(
                request, None if args.quiet else err, args.progress_interval, announce
            )
    except KeyboardInterrupt:
        print("vcdn live: interrupted; the event stays live on the origin.", file=err)
        return 130
    except VcdnError as exc:
        print(f"vcdn live: {exc}", file=err)
        return 1
    if not args.quiet:
        print(f"Live event '{result.title}' ended after {result.segments} segments "
              f"(#{result.first_msn}..#{result.edge_msn}); it is now a VOD title.", file=out)
    if args.control and result.manifest is not None:
        try:
            status = register(args.control, result.manifest, token)
        except VcdnError as exc:
            print(f"vcdn live: registering '{args.title}' failed: {exc}", file=err)
            return 1
        if not args.quiet:
            print(f"Registered '{args.title}' with the control API ({status}).", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
