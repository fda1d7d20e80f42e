"""`vcdn package SOURCE --title ID ...`: the packager's command line.

Argument checking happens here (a bad flag is a usage error, exit 2, before any work);
the work is `packager.package.package`. Errors the user can fix become one line on
stderr and exit 1; an interrupt (Ctrl-C or SIGTERM) removes the half-built title and
exits 130. Progress goes to stderr, the result to stdout.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Final, TextIO
from urllib.parse import urlsplit

from packager.dash import MPD_NAME
from packager.encrypt import SCHEMES, TitleKey
from packager.graph import FORMATS, PRESETS, EncodeOptions
from packager.ladder import DEFAULT_HEIGHTS, parse_ladder
from packager.package import ReporterFactory, Request, Result, package
from packager.register import TOKEN_ENV, URLS_ENV, register, store_key
from packager.run import BarReporter, LineReporter, NullReporter, Reporter
from vcdn.errors import VcdnError
from vcdn.settings import env_value
from vcdn.titles import is_valid_title

DEFAULT_ORIGIN_ROOT: Final = Path("data/origin")
MIN_SEGMENT_S: Final = 1.0
MAX_SEGMENT_S: Final = 60.0
DEFAULT_PROGRESS_INTERVAL_S: Final = 5.0


def _title(text: str) -> str:
    if not is_valid_title(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid title id: use 1-128 characters of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return text


def _ladder(text: str) -> tuple[int, ...]:
    try:
        return parse_ladder(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _segment_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not MIN_SEGMENT_S <= value <= MAX_SEGMENT_S:
        raise argparse.ArgumentTypeError(
            f"{text} s is outside {MIN_SEGMENT_S:g}..{MAX_SEGMENT_S:g} s"
        )
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} s is outside 0..3600 s")
    return value


def _control_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text


def _control_urls(text: str) -> str:
    """One URL or a comma-separated list of them (control replicas)."""
    for url in text.split(","):
        _control_url(url.strip())
    return text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vcdn package",
        description="Package a source video into an HLS ABR title and publish it to the origin.",
    )
    p.add_argument("source", metavar="SOURCE", type=Path, help="the source video file")
    p.add_argument("--title", required=True, type=_title, help="title id (used in URLs)")
    p.add_argument(
        "--ladder", type=_ladder, default=DEFAULT_HEIGHTS, metavar="H,H,...",
        help="rendition heights; taller than the source are dropped (default 1080,720,480,360)",
    )
    p.add_argument(
        "--segment-seconds", type=_segment_seconds, default=4.0, metavar="S",
        help="segment duration in seconds (default 4)",
    )
    p.add_argument(
        "--format", choices=FORMATS, default="fmp4",
        help="segment container; fmp4 writes a DASH manifest too (DASH needs fMP4, not ts)",
    )
    p.add_argument(
        "--single-file", action="store_true",
        help="one media file per rendition, segments addressed with EXT-X-BYTERANGE",
    )
    p.add_argument(
        "--origin-root", type=Path, default=DEFAULT_ORIGIN_ROOT, metavar="DIR",
        help=f"origin content store (default ./{DEFAULT_ORIGIN_ROOT})",
    )
    p.add_argument(
        "--control", type=_control_urls, metavar="URL", action="append",
        help=f"register the title with this control API (token from ${TOKEN_ENV}); repeat, "
        "or list comma-separated, for control replicas (default: $VCDN_CONTROL_URLS)",
    )
    p.add_argument(
        "--encrypt", choices=SCHEMES, metavar="aes-128|cenc",
        help="encrypt the title: aes-128 (HLS AES-128 segments) or cenc (Common Encryption, "
        "DASH with ClearKey); the key goes to the control plane's key service (needs "
        "--control), never to disk",
    )
    p.add_argument("--force", action="store_true", help="replace an existing title atomically")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    p.add_argument(
        "--preset", choices=PRESETS, default="veryfast", help="x264 preset (default veryfast)"
    )
    p.add_argument(
        "--progress-interval", type=_interval, default=DEFAULT_PROGRESS_INTERVAL_S,
        metavar="S", help="seconds between progress lines when stderr is not a terminal",
    )
    return p


def make_reporter(quiet: bool, stream: TextIO, interval: float) -> ReporterFactory:
    def factory(title: str, duration: float) -> Reporter:
        if quiet:
            return NullReporter()
        if stream.isatty():
            return BarReporter(title, duration, stream)
        return LineReporter(title, duration, stream, interval)

    return factory


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (systemd, docker stop, kill) cleans up like Ctrl-C does."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def summary(result: Result) -> str:
    m = result.manifest
    size = sum(f.size for f in m.files)
    speed = m.duration / result.elapsed if result.elapsed > 0 else 0.0
    lines = [
        f"Published title '{m.title}' at {result.path} "
        f"({m.duration:.1f} s, {len(m.renditions)} renditions, {len(m.files)} files, "
        f"{size / 1e6:.1f} MB; packaged in {result.elapsed:.1f} s, {speed:.1f}x real time)",
    ]
    for r in m.renditions:
        lines.append(
            f"  {r.name:>6}  {r.width}x{r.height}  peak {r.bandwidth / 1000:.0f} kb/s  "
            f"avg {r.average_bandwidth / 1000:.0f} kb/s  {r.codecs}"
        )
    lines.append(f"  master playlist: {result.path / 'master.m3u8'}")
    if (result.path / MPD_NAME).is_file():
        lines.append(f"  DASH manifest:   {result.path / MPD_NAME}")
    return "\n".join(lines)


def _key_sink(control: list[str], token: str) -> Callable[[str, TitleKey], None]:
    def sink(title: str, key: TitleKey) -> None:
        store_key(control, title, key, token)

    return sink


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    err, out = sys.stderr, sys.stdout
    if not args.control and os.environ.get(URLS_ENV, "").strip():
        args.control = [os.environ[URLS_ENV]]
    if args.encrypt and not args.control:
        print(
            "vcdn package: --encrypt needs --control: an encrypted title's key lives only in "
            "the control plane's key service; nothing was packaged.",
            file=err,
        )
        return 1
    token = None
    if args.control:
        token = env_value(TOKEN_ENV)
        if not token:
            print(
                f"vcdn package: --control needs the packager's bearer token in ${TOKEN_ENV}; "
                "nothing was packaged.",
                file=err,
            )
            return 1
    request = Request(
        source=args.source,
        title=args.title,
        origin_root=args.origin_root,
        heights=args.ladder,
        options=EncodeOptions(
            segment_seconds=args.segment_seconds,
            format=args.format,
            single_file=args.single_file,
            preset=args.preset,
            encrypt=args.encrypt,
        ),
        force=args.force,
        key_sink=_key_sink(args.control, token) if args.encrypt and token else None,
    )
    try:
        with _sigterm_interrupts():
            result = package(request, make_reporter(args.quiet, err, args.progress_interval))
    except KeyboardInterrupt:
        print("vcdn package: interrupted; nothing was published.", file=err)
        return 130
    except VcdnError as exc:
        print(f"vcdn package: {exc}", file=err)
        return 1
    if not args.quiet:
        print(summary(result), file=out)
    if args.control and token:
        try:
            status = register(args.control, result.manifest, token)
        except VcdnError as exc:
            print(
                f"vcdn package: title '{args.title}' is published at {result.path}, but "
                f"registering it failed: {exc}. The title stays published; run again with "
                "--force --control to register it.",
                file=err,
            )
            return 1
        if not args.quiet:
            print(f"Registered '{args.title}' with the control API ({status}).", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
