"""Live titles at the origin, pure: which copy of a segment to keep, and the playlists
built from what was kept.

Two pipelines publish the same event; for each media sequence number (MSN) the origin
keeps the first copy that passes `judge` and ignores the rest. Because every pipeline
numbers segments from the same epoch (`packager.livegraph`), MSN N starts at N x SEG
seconds after the Unix epoch in every copy, and the kept segments form one timeline
whoever sent them. Playlists (RFC 8216) are rendered from the kept segments only, so a
player is never told about a segment the origin does not hold whole.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from origin.content.fmp4 import SegmentTiming

#: Two copies meet within a frame or so; more is another timeline.
CONTINUITY_TOLERANCE_S: Final = 0.1
PLAYLIST_VERSION: Final = 7


@dataclass(frozen=True, slots=True)
class Kept:
    msn: int
    name: str
    start: float  # seconds since the Unix epoch (tfdt on the shared timeline)
    duration: float
    size: int

    @property
    def end(self) -> float:
        return self.start + self.duration


def judge(
    msn: int, timing: SegmentTiming, segment_seconds: float, previous: Kept | None
) -> str | None:
    """Why this copy of segment `msn` must not be kept, or None if it may be."""
    if not timing.starts_with_sync:
        return "its first video frame is not a keyframe, so it cannot be decoded on its own"
    if not 0 < timing.duration <= 1.5 * segment_seconds + CONTINUITY_TOLERANCE_S:
        return (f"it lasts {timing.duration:.3f} s, not about the event's "
                f"{segment_seconds:g} s segments")
    expected = msn * segment_seconds
    if abs(timing.start - expected) > segment_seconds / 2:
        return (f"it starts at {timing.start:.3f} s on the timeline, but segment {msn} "
                f"starts at {expected:.3f} s (shared epoch)")
    if previous is not None and previous.msn == msn - 1:
        gap = timing.start - previous.end
        if abs(gap) > CONTINUITY_TOLERANCE_S:
            return (f"its timestamps jump {gap:+.3f} s from the end of segment {msn - 1}")
    return None


def pdt(seconds: float) -> str:
    """RFC 8216 §4.3.2.6 date-time, millisecond precision, UTC."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def in_window(kept: Mapping[int, Kept], window: float) -> list[int]:
    """The MSNs a live playlist offers: the newest `window` seconds, oldest first."""
    if not kept:
        return []
    msns = sorted(kept)
    edge = kept[msns[-1]].end
    return [m for m in msns if kept[m].end > edge - window]


def expired(kept: Mapping[int, Kept], window: float, grace: float) -> list[int]:
    """MSNs that left the window more than `grace` seconds ago: players that loaded an
    older playlist may still fetch them until then."""
    if not kept:
        return []
    edge = max(k.end for k in kept.values())
    return sorted(m for m, k in kept.items() if k.end <= edge - window - grace)


def media_playlist(
    kept: Mapping[int, Kept], segment_seconds: float, window: float | None, *, ended: bool
) -> str:
    """A rendition's media playlist. A hole (neither pipeline delivered an MSN) becomes an
    ``EXT-X-GAP`` segment (rfc8216bis §4.4.4.7), because media sequence numbers are
    implicit and a skipped one would shift every later segment's number."""
    msns = sorted(kept) if window is None else in_window(kept, window)
    longest = max((kept[m].duration for m in msns), default=segment_seconds)
    # RFC 8216 §4.3.3.1: EXTINF rounded to the nearest integer must not exceed the target.
    target = max(1, math.floor(max(longest, segment_seconds) + 0.5))
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{PLAYLIST_VERSION}",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-MEDIA-SEQUENCE:{msns[0] if msns else 0}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    if ended and window is None:
        lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
    lines.append('#EXT-X-MAP:URI="init.mp4"')
    if msns:
        for msn in range(msns[0], msns[-1] + 1):
            seg = kept.get(msn)
            if seg is None:
                lines += ["#EXT-X-GAP", f"#EXTINF:{segment_seconds:.6f},", f"seg_{msn}.m4s"]
                continue
            lines += [
                f"#EXT-X-PROGRAM-DATE-TIME:{pdt(seg.start)}",
                f"#EXTINF:{seg.duration:.6f},",
                seg.name,
            ]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
