"""ffmpeg -progress parsing and rendering (bar for terminals, lines for logs)."""

from __future__ import annotations

import io
import re

import pytest

from packager.progress import (
    Progress,
    ProgressParser,
    clock,
    eta_seconds,
    format_bar,
    format_line,
    fraction,
)
from packager.run import BarReporter, LineReporter

# A block as ffmpeg 5.1 writes it with -progress pipe:1 (two outputs).
BLOCK = """frame=90
fps=45.00
stream_0_0_q=29.0
stream_1_0_q=29.0
bitrate=N/A
total_size=N/A
out_time_us=3000000
out_time_ms=3000000
out_time=00:00:03.000000
dup_frames=0
drop_frames=0
speed=1.5x
progress=continue
"""


def feed(text: str) -> list[Progress]:
    parser = ProgressParser()
    return [p for line in text.splitlines() if (p := parser.feed(line)) is not None]


def test_a_block_yields_one_progress_at_its_end() -> None:
    assert feed(BLOCK) == [Progress(seconds=3.0, speed=1.5, done=False)]


def test_the_end_block_says_done_and_counts_as_complete() -> None:
    (p,) = feed(BLOCK.replace("progress=continue", "progress=end"))
    assert p.done and fraction(p, 10.0) == 1.0 and eta_seconds(p, 10.0) == 0.0


@pytest.mark.parametrize(
    ("lines", "seconds", "speed"),
    [
        ("out_time_us=N/A\nspeed=N/A\nprogress=continue", 0.0, None),
        ("out_time_us=-23220\nspeed=   0x\nprogress=continue", 0.0, None),
        ("out_time_ms=2500000\nspeed=2.25x\nprogress=continue", 2.5, 2.25),
        ("garbage without equals\nprogress=continue", 0.0, None),
    ],
)
def test_unknown_or_odd_values_do_not_break_parsing(lines: str, seconds: float, speed) -> None:
    (p,) = feed(lines)
    assert (p.seconds, p.speed) == (seconds, speed)


def test_fraction_is_clamped_and_eta_divides_what_is_left_by_the_speed() -> None:
    p = Progress(seconds=4.0, speed=2.0, done=False)
    assert fraction(p, 10.0) == pytest.approx(0.4)
    assert eta_seconds(p, 10.0) == pytest.approx(3.0)
    assert fraction(Progress(12.0, 2.0, False), 10.0) == 1.0
    assert eta_seconds(Progress(1.0, None, False), 10.0) is None


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "--:--"), (0, "0:00"), (75.4, "1:15"), (3725, "1:02:05")]
)
def test_clock(seconds, text: str) -> None:
    assert clock(seconds) == text


def test_bar_shows_percent_speed_and_eta() -> None:
    line = format_bar("t1", Progress(5.0, 2.5, False), 10.0, width=10)
    assert line == "t1 [#####.....]  50%  2.50x  ETA 0:02"


def test_line_is_plain_text_with_the_same_facts() -> None:
    line = format_line("t1", Progress(5.0, 2.5, False), 10.0)
    assert line == "packaging t1: 50% (0:05 of 0:10), speed 2.50x, ETA 0:02"


def test_bar_reporter_redraws_one_line_and_ends_it() -> None:
    out = io.StringIO()
    bar = BarReporter("t1", 10.0, out)
    bar.update(Progress(2.0, 1.0, False))
    bar.update(Progress(10.0, 1.0, True))
    bar.finish()
    text = out.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    assert "100%" in text


def test_line_reporter_throttles_to_its_interval_but_always_reports_the_end() -> None:
    out = io.StringIO()
    lines = LineReporter("t1", 10.0, out, interval=3600)
    for s in range(1, 10):
        lines.update(Progress(float(s), 1.0, False))
    lines.update(Progress(10.0, 1.0, True))
    printed = out.getvalue().splitlines()
    assert len(printed) == 2 and "\r" not in out.getvalue()
    assert re.match(r"packaging t1: 10% ", printed[0])
    assert re.match(r"packaging t1: 100% ", printed[1])
