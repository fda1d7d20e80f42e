"""Just enough ISO BMFF (ISO/IEC 14496-12) to check an ingested CMAF segment, pure.

The live origin keeps the first copy of each media sequence number that passes checks,
so it must judge a segment from its bytes alone: the init segment gives each track's
timescale (``moov/trak/mdia/mdhd``) and handler (``hdlr``); a media segment gives, per
``moof/traf``, the decode time of its first sample (``tfdt``), the sample durations
(``trun``, else ``tfhd``/``trex`` defaults) and whether the first video sample is a sync
sample (``trun`` first-sample-flags or per-sample flags; ``sample_is_non_sync_sample`` is
bit 16). A segment whose first video frame is not a keyframe cannot be decoded on its
own, so a player switching to it would show garbage: it is refused.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

NON_SYNC: Final = 0x00010000  # ISO/IEC 14496-12 §8.8.3.1 sample_is_non_sync_sample
_CONTAINERS: Final = frozenset({b"moov", b"trak", b"mdia", b"moof", b"traf", b"mvex"})


class BoxError(ValueError):
    """The bytes are not the fragmented MP4 the packager writes."""


@dataclass(frozen=True, slots=True)
class Track:
    track_id: int
    timescale: int
    kind: str  # handler type: "vide", "soun", ...
    default_duration: int = 0
    default_flags: int = 0


@dataclass(frozen=True, slots=True)
class SegmentTiming:
    """What a media segment says about its video track."""

    start: float  # seconds on the media timeline (tfdt / timescale)
    duration: float  # seconds (sum of sample durations)
    samples: int
    starts_with_sync: bool


def boxes(data: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[
    tuple[bytes, int, int]
]:
    """(type, payload start, payload end) of each box in data[start:end]."""
    end = len(data) if end is None else end
    pos = start
    while pos < end:
        if end - pos < 8:
            raise BoxError(f"truncated box header at byte {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if end - pos < 16:
                raise BoxError(f"truncated large box header at byte {pos}")
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise BoxError(f"box {kind!r} at byte {pos} runs past its container")
        yield bytes(kind), pos + header, pos + size
        pos += size


def _find(data: bytes, path: tuple[bytes, ...], start: int = 0, end: int | None = None) -> Iterator[
    tuple[int, int]
]:
    """Payload spans of every box at `path` (nested types) inside data[start:end]."""
    head, rest = path[0], path[1:]
    for kind, s, e in boxes(data, start, end):
        if kind != head:
            continue
        if rest:
            yield from _find(data, rest, s, e)
        else:
            yield s, e


def _u32(data: bytes, pos: int, end: int) -> int:
    if pos + 4 > end:
        raise BoxError("box too short")
    return int(struct.unpack_from(">I", data, pos)[0])


def _u64(data: bytes, pos: int, end: int) -> int:
    if pos + 8 > end:
        raise BoxError("box too short")
    return int(struct.unpack_from(">Q", data, pos)[0])


def parse_init(data: bytes) -> dict[int, Track]:
    """Tracks of an init segment by track id; BoxError if it has none."""
    defaults: dict[int, tuple[int, int]] = {}
    for s, e in _find(data, (b"moov", b"mvex", b"trex")):
        track_id = _u32(data, s + 4, e)
        defaults[track_id] = (_u32(data, s + 12, e), _u32(data, s + 20, e))
    tracks: dict[int, Track] = {}
    for ts, te in _find(data, (b"moov", b"trak")):
        track_id = timescale = 0
        kind = ""
        for s, e in _find(data, (b"tkhd",), ts, te):
            version = data[s]
            track_id = _u32(data, s + (20 if version == 1 else 12), e)
        for s, e in _find(data, (b"mdia", b"mdhd"), ts, te):
            version = data[s]
            timescale = _u32(data, s + (20 if version == 1 else 12), e)
        for s, e in _find(data, (b"mdia", b"hdlr"), ts, te):
            if s + 12 > e:
                raise BoxError("hdlr box too short")
            kind = data[s + 8 : s + 12].decode("latin-1")
        if track_id and timescale:
            duration, flags = defaults.get(track_id, (0, 0))
            tracks[track_id] = Track(track_id, timescale, kind, duration, flags)
    if not tracks:
        raise BoxError("the init segment has no track with a timescale (moov/trak/mdia/mdhd)")
    return tracks


def video_track(tracks: dict[int, Track]) -> Track:
    for track in tracks.values():
        if track.kind == "vide":
            return track
    raise BoxError("the init segment has no video track")


def audio_track(tracks: dict[int, Track]) -> Track:
    """The sound track of an audio rendition's init segment (CMAF: its only track)."""
    for track in tracks.values():
        if track.kind == "soun":
            return track
    raise BoxError("the init segment has no audio track")


def parse_segment(data: bytes, track: Track) -> SegmentTiming:
    """Timing of `track` in a media segment; BoxError if the segment is malformed, has no
    samples of the track, or its media data is shorter than its sample table says."""
    start: int | None = None
    total = samples = 0
    first_sync: bool | None = None
    mdat_bytes = 0
    sample_bytes = 0
    for kind, s, e in boxes(data):
        if kind == b"mdat":
            mdat_bytes += e - s
        if kind != b"moof":
            continue
        for ts, te in _find(data, (b"traf",), s, e):
            tfhd = next(_find(data, (b"tfhd",), ts, te), None)
            if tfhd is None:
                raise BoxError("traf without tfhd")
            hs, he = tfhd
            flags = _u32(data, hs, he) & 0xFFFFFF
            if _u32(data, hs + 4, he) != track.track_id:
                continue
            pos = hs + 8
            if flags & 0x1:
                pos += 8  # base_data_offset
            if flags & 0x2:
                pos += 4  # sample_description_index
            default_duration = track.default_duration
            default_size = 0
            default_flags = track.default_flags
            if flags & 0x8:
                default_duration = _u32(data, pos, he)
                pos += 4
            if flags & 0x10:
                default_size = _u32(data, pos, he)
                pos += 4
            if flags & 0x20:
                default_flags = _u32(data, pos, he)
            for ds, de in _find(data, (b"tfdt",), ts, te):
                base = _u64(data, ds + 4, de) if data[ds] == 1 else _u32(data, ds + 4, de)
                if start is None:
                    start = base
            for rs, re_ in _find(data, (b"trun",), ts, te):
                word = _u32(data, rs, re_)
                tflags = word & 0xFFFFFF
                count = _u32(data, rs + 4, re_)
                pos = rs + 8
                if tflags & 0x1:
                    pos += 4  # data_offset
                first_flags = None
                if tflags & 0x4:
                    first_flags = _u32(data, pos, re_)
                    pos += 4
                per = sum(4 for bit in (0x100, 0x200, 0x400, 0x800) if tflags & bit)
                if pos + per * count > re_:
                    raise BoxError("trun sample table runs past its box")
                for i in range(count):
                    duration, size, sflags = default_duration, default_size, default_flags
                    if tflags & 0x100:
                        duration = _u32(data, pos, re_)
                        pos += 4
                    if tflags & 0x200:
                        size = _u32(data, pos, re_)
                        pos += 4
                    if tflags & 0x400:
                        sflags = _u32(data, pos, re_)
                        pos += 4
                    if tflags & 0x800:
                        pos += 4  # composition time offset
                    if i == 0 and first_flags is not None:
                        sflags = first_flags
                    if first_sync is None:
                        first_sync = not sflags & NON_SYNC
                    total += duration
                    sample_bytes += size
                samples += count
    if start is None or samples == 0:
        raise BoxError(f"the segment has no samples of track {track.track_id} (moof/traf/trun)")
    if mdat_bytes < sample_bytes:
        raise BoxError(
            f"the segment's media data holds {mdat_bytes} bytes, its samples need {sample_bytes}"
        )
    return SegmentTiming(
        start / track.timescale, total / track.timescale, samples, bool(first_sync)
    )
