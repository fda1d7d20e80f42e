"""Just enough ISO BMFF (ISO/IEC 14496-12) to time fragmented MP4, pure.

Two parts read the same few boxes: the packager cuts ffmpeg's fragmented MP4 into LL-HLS
parts (`packager.parts`) and the live origin judges every ingested CMAF segment
(`origin.content.fmp4`). Both need each track's timescale and handler from the init
segment (``moov/trak``: ``tkhd``, ``mdia/mdhd``, ``mdia/hdlr``; the ``mvex/trex``
defaults), and per ``moof/traf`` the decode time of the first sample (``tfdt``), the
sample durations (``trun``, else ``tfhd``/``trex`` defaults) and whether the first
sample is a sync sample (``trun`` first-sample-flags or per-sample flags;
``sample_is_non_sync_sample`` is bit 16). The walk over boxes and the sample table
exist here once, each bound checked, so that hostile bytes give a `BoxError`, never an
IndexError or a read past a box.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

NON_SYNC: Final = 0x00010000  # ISO/IEC 14496-12 §8.8.3.1 sample_is_non_sync_sample


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
class Run:
    """One ``traf`` of a known track: its samples as the sample table says."""

    track_id: int
    decode_time: int | None  # tfdt, in the track's timescale; None without a tfdt
    tfdt_at: int  # offset of the tfdt box (its header), -1 without one
    duration: int  # sum of sample durations
    samples: int
    first_sync: bool | None  # None: no sample
    sample_bytes: int  # sum of sample sizes (what the mdat must hold)
    #: Offset of tfhd's default_sample_duration when every sample takes it, else -1.
    default_at: int = -1


def boxes(data: bytes | memoryview, start: int = 0, end: int | None = None) -> Iterator[
    tuple[bytes, int, int, int]
]:
    """(type, box start, payload start, box end) of each box in data[start:end]."""
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
        yield bytes(kind), pos, pos + header, pos + size
        pos += size


def find(data: bytes, path: tuple[bytes, ...], start: int = 0, end: int | None = None
         ) -> Iterator[tuple[int, int, int]]:
    """(box start, payload start, box end) of every box at nested `path` in data[start:end]."""
    head, rest = path[0], path[1:]
    for kind, b, s, e in boxes(data, start, end):
        if kind == head:
            if rest:
                yield from find(data, rest, s, e)
            else:
                yield b, s, e


def u32(data: bytes, pos: int, end: int) -> int:
    if pos + 4 > end:
        raise BoxError("box too short")
    return int(struct.unpack_from(">I", data, pos)[0])


def u64(data: bytes, pos: int, end: int) -> int:
    if pos + 8 > end:
        raise BoxError("box too short")
    return int(struct.unpack_from(">Q", data, pos)[0])


def parse_init(data: bytes) -> dict[int, Track]:
    """Tracks of an init segment (``ftyp`` + ``moov``) by track id; BoxError if it has
    no track with a timescale."""
    defaults: dict[int, tuple[int, int]] = {}
    for _b, s, e in find(data, (b"moov", b"mvex", b"trex")):
        defaults[u32(data, s + 4, e)] = (u32(data, s + 12, e), u32(data, s + 20, e))
    tracks: dict[int, Track] = {}
    for _b, ts, te in find(data, (b"moov", b"trak")):
        track_id = timescale = 0
        kind = ""
        for _b2, s, e in find(data, (b"tkhd",), ts, te):
            track_id = u32(data, s + (20 if data[s] == 1 else 12), e)
        for _b2, s, e in find(data, (b"mdia", b"mdhd"), ts, te):
            timescale = u32(data, s + (20 if data[s] == 1 else 12), e)
        for _b2, s, e in find(data, (b"mdia", b"hdlr"), ts, te):
            if s + 12 > e:
                raise BoxError("hdlr box too short")
            kind = data[s + 8 : s + 12].decode("latin-1")
        if track_id and timescale:
            duration, flags = defaults.get(track_id, (0, 0))
            tracks[track_id] = Track(track_id, timescale, kind, duration, flags)
    if not tracks:
        raise BoxError("the init segment has no track with a timescale (moov/trak/mdia/mdhd)")
    return tracks


def traf_runs(data: bytes, start: int, end: int, tracks: Mapping[int, Track], *,
              strict: bool) -> Iterator[Run]:
    """The `Run` of each ``traf`` in the ``moof`` payload data[start:end]. A traf of a
    track not in `tracks` is skipped, or with `strict` a BoxError."""
    for _tb, ts, te in find(data, (b"traf",), start, end):
        tfhd = next(find(data, (b"tfhd",), ts, te), None)
        if tfhd is None:
            raise BoxError("traf without tfhd")
        _hb, hs, he = tfhd
        flags = u32(data, hs, he) & 0xFFFFFF
        track = tracks.get(u32(data, hs + 4, he))
        if track is None:
            if strict:
                raise BoxError("a traf names a track the init segment does not have")
            continue
        pos = hs + 8 + (8 if flags & 0x1 else 0) + (4 if flags & 0x2 else 0)
        duration0, size0, flags0 = track.default_duration, 0, track.default_flags
        default_at = -1
        if flags & 0x8:
            duration0 = u32(data, pos, he)
            default_at = pos
            pos += 4
        if flags & 0x10:
            size0 = u32(data, pos, he)
            pos += 4
        if flags & 0x20:
            flags0 = u32(data, pos, he)
        decode_time: int | None = None
        tfdt_at = -1
        for db, ds, de in find(data, (b"tfdt",), ts, te):
            if decode_time is None:
                decode_time = u64(data, ds + 4, de) if data[ds] == 1 else u32(data, ds + 4, de)
                tfdt_at = db
        total = count = sample_bytes = 0
        first_sync: bool | None = None
        for _rb, rs, re_ in find(data, (b"trun",), ts, te):
            tflags = u32(data, rs, re_) & 0xFFFFFF
            n = u32(data, rs + 4, re_)
            pos = rs + 8 + (4 if tflags & 0x1 else 0)
            if tflags & 0x100:
                default_at = -1
            first_flags = None
            if tflags & 0x4:
                first_flags = u32(data, pos, re_)
                pos += 4
            per = sum(4 for bit in (0x100, 0x200, 0x400, 0x800) if tflags & bit)
            if pos + per * n > re_:
                raise BoxError("trun sample table runs past its box")
            for i in range(n):
                d, z, f = duration0, size0, flags0
                if tflags & 0x100:
                    d = u32(data, pos, re_)
                    pos += 4
                if tflags & 0x200:
                    z = u32(data, pos, re_)
                    pos += 4
                if tflags & 0x400:
                    f = u32(data, pos, re_)
                    pos += 4
                if tflags & 0x800:
                    pos += 4  # composition time offset
                if i == 0 and first_flags is not None:
                    f = first_flags
                if first_sync is None:
                    first_sync = not f & NON_SYNC
                total += d
                sample_bytes += z
            count += n
        yield Run(track.track_id, decode_time, tfdt_at, total, count, first_sync,
                  sample_bytes, default_at)
