"""Low-latency HLS media playlists and the server's blocking rules, pure.

What the origin knows of a rendition (the kept segments, the parts of the newest ones,
the part being written) in; a playlist (draft-pantos-hls-rfc8216bis §4.4.4.9 EXT-X-PART,
§4.4.3.7 PART-INF, §4.4.3.8 SERVER-CONTROL, §4.4.5.2 SKIP, §4.4.5.3 PRELOAD-HINT,
§4.4.5.4 RENDITION-REPORT) or a verdict on a blocking request (§6.2.5.2) out.

Positions: part P of segment M is ``(M, P)``, compared as pairs. A playlist "contains"
a part request when the request's position is at or before the newest part the playlist
holds, which is how the spec's "that part or a later one" reads for the part after the
last of a segment: part 0 of the next segment satisfies it. A kept segment whose parts
the origin does not hold (another pipeline's, or older) counts as ``(M, COMPLETE)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from origin.content.livestate import Kept, in_window, pdt
from vcdn.hlsdirectives import Directives

COMPLETE: Final = 1 << 30
VERSION: Final = 9  # EXT-X-SKIP needs version 9 (§4.4.5.2)
#: §4.4.3.8: PART-HOLD-BACK at least twice the part target; three parts is the advice.
HOLD_BACK_PARTS: Final = 3
#: §4.4.3.8: CAN-SKIP-UNTIL at least six target durations.
SKIP_TARGETS: Final = 6
#: §6.2.5.2: the server holds a blocking request at most three target durations.
HOLD_TARGETS: Final = 3
#: §6.2.5.2: a request more than two segments past the last one is a 400.
AHEAD_LIMIT: Final = 2
#: EXT-X-PART tags stay in the playlist this many target durations (§4.4.4.9 says they
#: may leave after three).
PART_TARGETS: Final = 3


@dataclass(frozen=True, slots=True)
class PartInfo:
    msn: int
    index: int
    duration: float
    independent: bool
    start: float = 0.0  # seconds on the shared timeline (tfdt)

    @property
    def uri(self) -> str:
        return part_name(self.msn, self.index)


@dataclass(frozen=True, slots=True)
class Report:
    uri: str  # relative to the playlist, e.g. "../240p/index.m3u8"
    last_msn: int
    last_part: int


@dataclass(frozen=True, slots=True)
class View:
    """One rendition as the origin holds it now."""

    kept: Mapping[int, Kept]
    parts: Mapping[int, Sequence[PartInfo]]  # done parts by MSN, in order, from 0
    segment_seconds: float
    part_target: float
    window: float

    @property
    def newest_kept(self) -> int:
        return max(self.kept, default=-1)

    @property
    def open_msn(self) -> int | None:
        """The segment being made: the newest MSN with parts and no kept segment yet."""
        newest = self.newest_kept
        started = [m for m, ps in self.parts.items() if m > newest and ps]
        return max(started) if started else None

    @property
    def position(self) -> tuple[int, int]:
        """The newest (MSN, part) the playlist holds: the open segment's last part, else
        the newest kept segment's last part (or COMPLETE when its parts are unknown)."""
        open_msn = self.open_msn
        if open_msn is not None:
            return open_msn, len(self.parts[open_msn]) - 1
        if not self.kept:
            return -1, -1
        newest = self.newest_kept
        parts = self.parts.get(newest, ())
        return newest, (len(parts) - 1 if parts else COMPLETE)

    @property
    def last_msn(self) -> int:
        """The MSN of the playlist's last (possibly partial) segment."""
        open_msn = self.open_msn
        return open_msn if open_msn is not None else self.newest_kept

    @property
    def target_duration(self) -> int:
        longest = max((k.duration for k in self.kept.values()), default=self.segment_seconds)
        return max(1, math.floor(max(longest, self.segment_seconds) + 0.5))

    def next_part(self) -> tuple[int, int]:
        """The part a preload hint names: the next one of the open segment, else the first
        of the segment after the newest kept one. An open segment whose parts already
        make a whole segment is about to be kept (its PUT follows its last part), so the
        next part is the first of the next segment: a hint of a part that never comes
        would send every player after a 404."""
        open_msn = self.open_msn
        if open_msn is not None:
            parts = self.parts[open_msn]
            if sum(p.duration for p in parts) < self.segment_seconds - self.part_target / 2:
                return open_msn, len(parts)
            return open_msn + 1, 0
        return self.newest_kept + 1, 0

    def report(self, uri: str) -> Report:
        msn, part = self.position
        return Report(uri, max(msn, 0), 0 if part == COMPLETE else max(part, 0))


def part_name(msn: int, index: int) -> str:
    return f"part_{msn}_{index}.m4s"


def part_hold_back(part_target: float) -> float:
    return round(HOLD_BACK_PARTS * part_target, 3)


def can_skip_until(target: int) -> float:
    return float(SKIP_TARGETS * target)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a playlist request now: serve, wait, or refuse (400)."""

    action: str  # "serve", "wait", "refuse"
    reason: str = ""


def judge(view: View, d: Directives) -> Verdict:
    """§6.2.5.2 for one request against what the origin holds now."""
    if d.msn is None:
        return Verdict("serve")
    if d.msn > view.last_msn + AHEAD_LIMIT:
        return Verdict("refuse", f"_HLS_msn={d.msn} is more than {AHEAD_LIMIT} segments past "
                       f"the playlist's last segment ({view.last_msn}).")
    if d.part is None:
        return Verdict("serve" if view.newest_kept >= d.msn else "wait")
    # "Part P of segment M or a later one": part 0 of M+1 answers a request for the part
    # after M's last.
    return Verdict("serve" if (d.msn, d.part) <= view.position else "wait")


def _part_line(p: PartInfo) -> str:
    line = f'#EXT-X-PART:DURATION={p.duration:.5f},URI="{p.uri}"'
    return line + (",INDEPENDENT=YES" if p.independent else "")


def render(view: View, reports: Sequence[Report], *, skip: bool) -> str:
    """The rendition's low-latency playlist; with `skip`, the delta update (§6.2.5.1):
    segments more than CAN-SKIP-UNTIL before the end are replaced by EXT-X-SKIP."""
    kept = view.kept
    msns = in_window(kept, view.window)
    target = view.target_duration
    skip_until = can_skip_until(target)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSION}",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
        f"CAN-SKIP-UNTIL={skip_until:.1f},PART-HOLD-BACK={part_hold_back(view.part_target):.3f}",
        f"#EXT-X-PART-INF:PART-TARGET={view.part_target:.5f}",
    ]
    open_msn = view.open_msn
    first = msns[0] if msns else (open_msn if open_msn is not None else 0)
    lines += [f"#EXT-X-MEDIA-SEQUENCE:{first}", "#EXT-X-INDEPENDENT-SEGMENTS",
              '#EXT-X-MAP:URI="init.mp4"']
    last = msns[-1] if msns else first - 1
    end = kept[last].end if msns else 0.0
    # Parts are listed for the segments that end within PART_TARGETS target durations of
    # the playlist's end, and only when the origin holds all of a segment's parts.
    part_from = end - PART_TARGETS * target
    skipped = 0
    if skip and msns:
        skipped = sum(1 for m in range(first, last + 1)
                      if m not in kept or kept[m].end <= end - skip_until)
        # A skipped gap is still a segment of the count; never skip the last one.
        skipped = min(skipped, last - first)
        if skipped:
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    for msn in range(first + skipped, last + 1):
        seg = kept.get(msn)
        if seg is None:
            lines += ["#EXT-X-GAP", f"#EXTINF:{view.segment_seconds:.6f},", f"seg_{msn}.m4s"]
            continue
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{pdt(seg.start)}")
        parts = view.parts.get(msn, ())
        if parts and seg.end > part_from and abs(
            sum(p.duration for p in parts) - seg.duration
        ) < view.part_target / 2:
            lines += [_part_line(p) for p in parts]
        lines += [f"#EXTINF:{seg.duration:.6f},", seg.name]
    if open_msn is not None:
        # Segments the pipelines skipped between the newest kept one and the open one.
        for msn in range(last + 1, open_msn):
            if msns:
                lines += ["#EXT-X-GAP", f"#EXTINF:{view.segment_seconds:.6f},", f"seg_{msn}.m4s"]
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{pdt(view.parts[open_msn][0].start)}")
        lines += [_part_line(p) for p in view.parts[open_msn]]
    hint_msn, hint_part = view.next_part()
    lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{part_name(hint_msn, hint_part)}"')
    for r in reports:
        lines.append(
            f'#EXT-X-RENDITION-REPORT:URI="{r.uri}",LAST-MSN={r.last_msn},LAST-PART={r.last_part}'
        )
    return "\n".join(lines) + "\n"


def blocking_cache_control(target: int) -> str:
    """Appendix (CDN tuning): a blocking answer names one version of the playlist and can
    be cached for six target durations; ``_HLS_*`` in the key keeps versions apart."""
    return f"public, max-age={SKIP_TARGETS * target}"


#: A non-blocking request asks for the playlist as it is now: about a part's lifetime, at
#: the one-second resolution of HTTP freshness.
LIVE_CACHE_CONTROL: Final = "public, max-age=1"
#: Refusals and timeouts are kept a moment, so that a crowd of players asking the same
#: thing does not reach the origin once each.
ERROR_CACHE_CONTROL: Final = "public, max-age=1"
#: A part never changes once written.
PART_CACHE_CONTROL: Final = "public, max-age=300"
