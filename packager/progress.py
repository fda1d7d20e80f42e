"""ffmpeg's ``-progress`` output, parsed and rendered, pure.

ffmpeg writes ``key=value`` lines and closes each block with ``progress=continue`` (or
``progress=end``). The position in the source (``out_time_us``) against the source
duration gives the percentage; ffmpeg's ``speed`` is already a multiple of real time, so
the ETA is what is left of the source divided by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

BAR_WIDTH: Final = 30


@dataclass(frozen=True, slots=True)
class Progress:
    seconds: float  # how far into the source the encoders are
    speed: float | None  # multiple of real time; None until ffmpeg knows
    done: bool
    dropped: int = 0  # frames ffmpeg dropped (drop_frames): a live encoder falling behind


class ProgressParser:
    """Feed it lines; it returns a `Progress` at the end of each block, else None."""

    __slots__ = ("_fields",)

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}

    def feed(self, line: str) -> Progress | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        if key != "progress":
            self._fields[key] = value.strip()
            return None
        fields, self._fields = self._fields, {}
        return Progress(
            _out_seconds(fields), _speed(fields.get("speed")), value.strip() == "end",
            _count(fields.get("drop_frames")),
        )


def _out_seconds(fields: dict[str, str]) -> float:
    # out_time_us is the documented key; out_time_ms is, despite its name, microseconds too.
    for key in ("out_time_us", "out_time_ms"):
        try:
            return max(0.0, int(fields[key]) / 1e6)
        except (KeyError, ValueError):
            continue
    return 0.0


def _count(text: str | None) -> int:
    try:
        return max(0, int((text or "0").strip()))
    except ValueError:
        return 0


def _speed(text: str | None) -> float | None:
    try:
        value = float((text or "").strip().rstrip("x"))
    except ValueError:
        return None
    return value if value > 0 else None


def fraction(p: Progress, duration: float) -> float:
    """Share of the source done, 0..1 (1 once ffmpeg says it has finished)."""
    if p.done:
        return 1.0
    if duration <= 0:
        return 0.0
    return min(1.0, max(0.0, p.seconds / duration))


def eta_seconds(p: Progress, duration: float) -> float | None:
    """Seconds left at the current speed; None while the speed is unknown."""
    if p.done:
        return 0.0
    if not p.speed:
        return None
    return max(0.0, duration - p.seconds) / p.speed


def clock(seconds: float | None) -> str:
    """`75.2` → ``1:15``; ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _speed_text(p: Progress) -> str:
    return f"{p.speed:.2f}x" if p.speed else "?x"


def format_bar(title: str, p: Progress, duration: float, width: int = BAR_WIDTH) -> str:
    """One terminal line: ``t1 [#########.....]  62%  3.10x  ETA 0:12``."""
    share = fraction(p, duration)
    filled = int(share * width)
    bar = "#" * filled + "." * (width - filled)
    eta = clock(eta_seconds(p, duration))
    return f"{title} [{bar}] {share * 100:3.0f}%  {_speed_text(p)}  ETA {eta}"


def format_line(title: str, p: Progress, duration: float) -> str:
    """One log-friendly line for pipes and CI logs."""
    share = fraction(p, duration)
    position = duration if p.done else min(p.seconds, duration)
    return (
        f"packaging {title}: {share * 100:.0f}% ({clock(position)} of "
        f"{clock(duration)}), speed {_speed_text(p)}, ETA {clock(eta_seconds(p, duration))}"
    )
