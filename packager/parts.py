"""Cutting ffmpeg's fragmented MP4 into LL-HLS parts and segments, pure (no I/O).

For low-latency HLS ffmpeg writes each rendition as one fragmented MP4 stream (``-f mp4
-movflags +empty_moov+default_base_moof+frag_every_frame``): ``ftyp`` + ``moov`` (the init
segment), then one fragment (``moof`` + ``mdat``) per encoded frame of each track, written
as soon as the frame is encoded. This module turns that byte stream into:

* `BoxSplitter`: complete top-level boxes out of arbitrary chunks of the stream;
* `parse_init` / `parse_fragment`: the few ISO/IEC 14496-12 fields needed to time a
  fragment (``mdhd`` timescale, ``hdlr`` kind, ``trex`` defaults; ``tfhd``, ``tfdt``,
  ``trun`` sample durations and flags);
* `shift_fragment`: the fragment moved onto the event's shared timeline by rewriting its
  ``tfdt`` (every pipeline numbers segments from the Unix epoch, `packager.livegraph`);
* `Cutter`: fragments grouped into parts of about `part_seconds` and segments of
  `segment_seconds`. A part never splits a fragment, so every part boundary is a sample
  boundary and the parts of a segment concatenate to the segment byte for byte. A part
  opens only at a video frame (pending audio joins that part), it is INDEPENDENT exactly
  when that frame is a sync sample, and a segment opens only at a sync sample.

The cutter emits a part as it grows (`PartOpened`, `PartData`, `PartClosed`) so that the
uploader can stream it to the origin while ffmpeg is still encoding its later frames:
that is what a preload-hinted part is.

`AudioCutter` does the same for an event's separate audio rendition (a stream with one
sound track, every sample a sync sample): parts of as many whole AAC frames as fit in
`part_seconds`, and segments that start at the first frame at or after each slot
boundary (N x SEG on the shared timeline, less half a frame), so that audio segment N is
the stretch of video segment N.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from vcdn import mp4
from vcdn.mp4 import BoxError, Track

#: Upper bound of one top-level box we buffer (a fragment of one frame is far smaller).
MAX_BOX: Final = 64 * 1024 * 1024


# --- boxes -------------------------------------------------------------------------


class BoxSplitter:
    """Complete top-level boxes out of a stream fed in arbitrary chunks."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        """(type, whole box bytes) of every box completed by `chunk`."""
        self._buf += chunk
        out: list[tuple[bytes, bytes]] = []
        pos = 0
        buf = self._buf
        while len(buf) - pos >= 8:
            size, kind = struct.unpack_from(">I4s", buf, pos)
            if size == 1:
                if len(buf) - pos < 16:
                    break
                (size,) = struct.unpack_from(">Q", buf, pos + 8)
            elif size == 0:
                raise BoxError("a box of unbounded size cannot be cut from a live stream")
            if size < 8 or size > MAX_BOX:
                raise BoxError(f"box {bytes(kind)!r} claims {size} bytes")
            if len(buf) - pos < size:
                break
            out.append((bytes(kind), bytes(buf[pos : pos + size])))
            pos += size
        del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete box still held (nonzero at the end: a truncated stream)."""
        return len(self._buf)


# --- init and fragments -----------------------------------------------------------


def parse_init(data: bytes) -> dict[int, Track]:
    """Tracks of an init segment (``ftyp`` + ``moov``) by id; BoxError without a video
    or a sound track (parts and segments are cut at video frames, or at audio frames in
    an audio rendition)."""
    tracks = mp4.parse_init(data)
    if not any(t.kind in ("vide", "soun") for t in tracks.values()):
        raise BoxError("the init segment has no video or sound track")
    return tracks


@dataclass(frozen=True, slots=True)
class TrackRun:
    """One track's samples in a fragment."""

    track_id: int
    decode_time: int  # tfdt, in the track's timescale
    duration: int  # sum of sample durations
    samples: int
    first_sync: bool
    tfdt_at: int  # offset of the tfdt box in the fragment (for shifting)
    #: Offset of tfhd's default_sample_duration when every sample takes it, else -1.
    default_at: int = -1


@dataclass(frozen=True, slots=True)
class Fragment:
    data: bytes  # moof + mdat, exactly as they appear in the stream
    runs: tuple[TrackRun, ...]

    def run(self, track_id: int) -> TrackRun | None:
        return next((r for r in self.runs if r.track_id == track_id), None)


def parse_fragment(data: bytes, tracks: dict[int, Track]) -> Fragment:
    """The timing of every track in one ``moof`` (+ its ``mdat``); BoxError if the moof
    is malformed or names a track the init segment lacks."""
    moofs = list(mp4.find(data, (b"moof",)))
    if len(moofs) != 1:
        raise BoxError("a fragment is one moof and its mdat")
    _mb, ms, me = moofs[0]
    runs: list[TrackRun] = []
    for run in mp4.traf_runs(data, ms, me, tracks, strict=True):
        if run.decode_time is None:
            raise BoxError("traf without tfdt")
        if run.samples:
            runs.append(TrackRun(run.track_id, run.decode_time, run.duration, run.samples,
                                 bool(run.first_sync), run.tfdt_at, run.default_at))
    if not runs:
        raise BoxError("a fragment without samples")
    return Fragment(data, tuple(runs))


def shift_fragment(
    frag: Fragment, offsets: dict[int, int], frame_ticks: dict[int, int] | None = None
) -> Fragment:
    """The fragment with each track's decode time moved by `offsets[track]` ticks (a
    version 1 ``tfdt`` is rewritten in place; sizes and sample boundaries do not move).

    With `frame_ticks`, a track whose samples all say they last 0 ticks gets that
    duration in its ``tfhd`` default: ffmpeg writes a frame the moment it is encoded,
    before it knows the frame's duration, and players need one (MSE frames of no length
    leave holes in the buffered ranges)."""
    data = bytearray(frag.data)
    runs = []
    for run in frag.runs:
        delta = offsets.get(run.track_id, 0)
        new = run.decode_time + delta
        if new < 0:
            raise BoxError("a decode time before the timeline's start")
        payload = run.tfdt_at + 8
        if data[payload] == 1:
            struct.pack_into(">Q", data, payload + 4, new)
        elif new <= 0xFFFFFFFF:
            struct.pack_into(">I", data, payload + 4, new)
        else:
            raise BoxError("a version 0 tfdt cannot hold the shared timeline's decode times")
        duration = run.duration
        ticks = (frame_ticks or {}).get(run.track_id, 0)
        if duration == 0 and ticks > 0 and run.default_at >= 0:
            struct.pack_into(">I", data, run.default_at, ticks)
            duration = ticks * run.samples
        runs.append(TrackRun(run.track_id, new, duration, run.samples, run.first_sync,
                             run.tfdt_at, run.default_at))
    return Fragment(bytes(data), tuple(runs))


# --- the cutter ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartOpened:
    msn: int
    index: int
    independent: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class PartData:
    msn: int
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class PartClosed:
    msn: int
    index: int
    duration: float  # seconds of video


@dataclass(frozen=True, slots=True)
class SegmentClosed:
    msn: int
    duration: float  # seconds of video
    parts: int


Event = PartOpened | PartData | PartClosed | SegmentClosed


@dataclass(slots=True)
class _Open:
    msn: int
    start: float  # video seconds at the segment's first frame
    parts: int = 0  # parts closed so far
    part_start: float | None = None  # video seconds at the open part's first frame, or None


@dataclass(slots=True)
class Cutter:
    """Fragments in stream order → parts and segments (events), on the shared timeline.

    A part closes right after the video frame that brings it to `part_seconds` (less half
    a frame, so that 10 frames at 30 fps make a 0.333 s part), and the segment closes
    with its part once it holds `segment_seconds` of video (less a quarter frame): the
    uploader learns both as soon as the frame that completes them is encoded. A keyframe
    closes the open part early, and the segment too once it is long enough (a segment
    one frame short at a fractional frame rate). The next segment opens at the next
    sync sample; fragments before one (a stream that does not start on a keyframe, or a
    keyframe that came late) are dropped, so no segment ever starts undecodable. The
    media sequence number of a segment is its first frame's time over the segment length
    (the shared epoch of `packager.livegraph`)."""

    tracks: dict[int, Track]
    segment_seconds: float
    part_seconds: float
    fps: float
    _video: Track = field(init=False)
    _seg: _Open | None = field(default=None, init=False)
    _pending: list[bytes] = field(default_factory=list, init=False)
    _end: float = field(default=0.0, init=False)
    _first: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        video = next((t for t in self.tracks.values() if t.kind == "vide"), None)
        if video is None:
            raise BoxError("the stream has no video track to cut at")
        self._video = video

    def feed(self, frag: Fragment) -> list[Event]:
        run = frag.run(self._video.track_id)
        seg = self._seg
        if run is None:
            # Audio only: it belongs to the open part, or waits for the next one to open.
            if seg is not None and seg.part_start is not None:
                return [PartData(seg.msn, seg.parts, frag.data)]
            self._pending.append(frag.data)
            return []
        scale = self._video.timescale
        start = run.decode_time / scale
        end = (run.decode_time + run.duration) / scale
        half = 0.5 / self.fps
        out: list[Event] = []
        if seg is not None and run.first_sync:
            # A keyframe closes the open part early, so that INDEPENDENT parts are exactly
            # those that start with one; at a segment's length it also starts a segment.
            if seg.part_start is not None:
                out.append(PartClosed(seg.msn, seg.parts, start - seg.part_start))
                seg.parts += 1
                seg.part_start = None
            if start - seg.start >= self.segment_seconds - half:
                out.append(SegmentClosed(seg.msn, start - seg.start, seg.parts))
                seg = self._seg = None
        if seg is None:
            if not run.first_sync:
                self._pending.clear()
                return out  # wait for a keyframe to start a segment on
            seg = self._seg = _Open(round(start / self.segment_seconds), start)
            if self._first is None:
                self._first = seg.msn
        if seg.part_start is None:
            seg.part_start = start
            data = b"".join([*self._pending, frag.data])
            self._pending.clear()
            out.append(PartOpened(seg.msn, seg.parts, run.first_sync, data))
        else:
            out.append(PartData(seg.msn, seg.parts, frag.data))
        self._end = end
        if end - seg.part_start >= self.part_seconds - half:
            out.append(PartClosed(seg.msn, seg.parts, end - seg.part_start))
            seg.parts += 1
            seg.part_start = None
            # The first segment of a stream is closed by the next keyframe only: ffmpeg
            # stretches its first frame over the audio priming, so its length misleads.
            if seg.msn != self._first and end - seg.start >= self.segment_seconds - half / 2:
                out.append(SegmentClosed(seg.msn, end - seg.start, seg.parts))
                self._seg = None
        return out

    def finish(self) -> list[Event]:
        """The stream ended: close what is open (a last, shorter part and segment)."""
        seg = self._seg
        out: list[Event] = []
        if seg is None:
            return out
        if seg.part_start is not None:
            out.append(PartClosed(seg.msn, seg.parts, self._end - seg.part_start))
            seg.parts += 1
        out.append(SegmentClosed(seg.msn, self._end - seg.start, seg.parts))
        self._seg = None
        return out


@dataclass(slots=True)
class AudioCutter:
    """An audio rendition's fragments → parts and segments, on the shared timeline.

    Every AAC frame is a sync sample, so every part is independent and a segment may
    open at any frame. A part closes once the next frame would take it past
    `part_seconds` (15 frames of 1024 samples at 48 kHz, 0.32 s, for 0.333 s): a part
    never exceeds the playlist's PART-TARGET, which comes from the video's frame rate.
    The segment of number N opens at the first frame at or after N x SEG (less half a
    frame) and closes when a frame at or after (N+1) x SEG arrives, so the boundaries
    never drift from the video's, whatever the frame length."""

    tracks: dict[int, Track]
    segment_seconds: float
    part_seconds: float
    _audio: Track = field(init=False)
    _seg: _Open | None = field(default=None, init=False)
    _end: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        audio = next((t for t in self.tracks.values() if t.kind == "soun"), None)
        if audio is None:
            raise BoxError("the audio stream has no sound track")
        self._audio = audio

    def _close(self, seg: _Open, at: float) -> list[Event]:
        out: list[Event] = []
        if seg.part_start is not None:
            out.append(PartClosed(seg.msn, seg.parts, at - seg.part_start))
            seg.parts += 1
            seg.part_start = None
        out.append(SegmentClosed(seg.msn, at - seg.start, seg.parts))
        self._seg = None
        return out

    def feed(self, frag: Fragment) -> list[Event]:
        run = frag.run(self._audio.track_id)
        if run is None:
            return []
        scale = self._audio.timescale
        start = run.decode_time / scale
        end = (run.decode_time + run.duration) / scale
        frame = (end - start) / max(1, run.samples)
        out: list[Event] = []
        seg = self._seg
        if seg is not None and start >= (seg.msn + 1) * self.segment_seconds - frame / 2:
            out += self._close(seg, start)
            seg = None
        if seg is None:
            seg = self._seg = _Open(round(start / self.segment_seconds), start)
        if seg.part_start is None:
            seg.part_start = start
            out.append(PartOpened(seg.msn, seg.parts, True, frag.data))
        else:
            out.append(PartData(seg.msn, seg.parts, frag.data))
        self._end = end
        if end + frame - seg.part_start > self.part_seconds + 1e-9:
            out.append(PartClosed(seg.msn, seg.parts, end - seg.part_start))
            seg.parts += 1
            seg.part_start = None
        return out

    def finish(self) -> list[Event]:
        """The stream ended: close what is open (a last, shorter part and segment)."""
        seg = self._seg
        return [] if seg is None else self._close(seg, self._end)
