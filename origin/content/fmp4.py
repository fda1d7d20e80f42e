"""Just enough ISO BMFF (ISO/IEC 14496-12) to check an ingested CMAF segment, pure.

The live origin keeps the first copy of each media sequence number that passes checks,
so it must judge a segment from its bytes alone: the init segment gives each track's
timescale (``moov/trak/mdia/mdhd``) and handler (``hdlr``); a media segment gives, per
``moof/traf``, the decode time of its first sample (``tfdt``), the sample durations
(``trun``, else ``tfhd``/``trex`` defaults) and whether the first video sample is a sync
sample (``trun`` first-sample-flags or per-sample flags; ``sample_is_non_sync_sample`` is
bit 16). A segment whose first video frame is not a keyframe cannot be decoded on its
own, so a player switching to it would show garbage: it is refused. The box walk and
the sample table are `vcdn.mp4`'s, which the packager's part cutter reads with too.
"""

from __future__ import annotations

from dataclasses import dataclass

from vcdn.mp4 import BoxError, Track, boxes, parse_init, traf_runs

__all__ = ["BoxError", "SegmentTiming", "Track", "audio_track", "boxes", "parse_init",
           "parse_segment", "video_track"]


@dataclass(frozen=True, slots=True)
class SegmentTiming:
    """What a media segment says about its video track."""

    start: float  # seconds on the media timeline (tfdt / timescale)
    duration: float  # seconds (sum of sample durations)
    samples: int
    starts_with_sync: bool


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
    mdat_bytes = sample_bytes = 0
    tracks = {track.track_id: track}
    for kind, _b, s, e in boxes(data):
        if kind == b"mdat":
            mdat_bytes += e - s
        if kind != b"moof":
            continue
        for run in traf_runs(data, s, e, tracks, strict=False):
            if start is None:
                start = run.decode_time
            if first_sync is None:
                first_sync = run.first_sync
            total += run.duration
            samples += run.samples
            sample_bytes += run.sample_bytes
    if start is None or samples == 0:
        raise BoxError(f"the segment has no samples of track {track.track_id} (moof/traf/trun)")
    if mdat_bytes < sample_bytes:
        raise BoxError(
            f"the segment's media data holds {mdat_bytes} bytes, its samples need {sample_bytes}"
        )
    return SegmentTiming(
        start / track.timescale, total / track.timescale, samples, bool(first_sync)
    )
