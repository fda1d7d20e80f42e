"""The DASH manifest (``manifest.mpd``), pure: the packaged ladder in, MPD text out.

The MPD points at the very files the HLS playlists point at (CMAF: one track per file,
fMP4 init + media segments), so a title stores its media once and serves both. Every URL
in it is relative without a leading slash, so it resolves against the MPD's own URL and a
signed ``/s/{token}/...`` prefix carries over to every segment, as it does for HLS.

Addressing follows what ffmpeg wrote:

* segment files: ``SegmentTemplate`` with ``$Number$`` and a ``SegmentTimeline`` built from
  the measured segment durations (the last segment is short, and audio segments are not
  whole multiples of the AAC frame), profile ``isoff-live``;
* single-file mode: ``SegmentList`` with ``mediaRange`` byte ranges into the one media
  file, the ranges the HLS playlist's ``EXT-X-BYTERANGE`` tags state. ``SegmentBase``
  would need a ``sidx`` box, which ffmpeg's HLS muxer does not write; a segment list
  needs none and addresses the same bytes. ``isoff-live`` does not allow segment lists,
  so these MPDs declare the ``full`` profile.

This module writes the static (VOD) kind; a live event's dynamic MPD is the origin's
(`origin.content.livempd`), written from the segments it kept.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, Literal

from vcdn.hlsplaylist import MediaPlaylist

MPD_NAME: Final = "manifest.mpd"
MPD_MEDIA_TYPE: Final = "application/dash+xml"
MPD_NS: Final = "urn:mpeg:dash:schema:mpd:2011"
PROFILE_LIVE: Final = "urn:mpeg:dash:profile:isoff-live:2011"
PROFILE_FULL: Final = "urn:mpeg:dash:profile:full:2011"
TIMESCALE: Final = 1000  # the timeline in milliseconds: EXTINF has microseconds at best
CHANNEL_SCHEME: Final = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
CENC_NS: Final = "urn:mpeg:cenc:2013"
MP4_PROTECTION: Final = "urn:mpeg:dash:mp4protection:2011"
CLEARKEY_SCHEME: Final = "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e"
_PATTERN: Final = re.compile(
    r"^(?P<dir>[^/]+)/(?P<stem>[^/%$]*)%0(?P<width>\d)d(?P<ext>\.[a-z0-9]+)$"
)


class DashError(ValueError):
    """The packaged rendition cannot be described in an MPD as written."""


@dataclass(frozen=True, slots=True)
class Addressing:
    """Where a track's bytes are: a template of numbered files, or ranges in one file."""

    kind: Literal["template", "ranges"]
    init: str  # the init segment (template), or the one media file (ranges)
    media: str = ""  # the $Number$ template (template mode)
    start_number: int = 1
    init_range: tuple[int, int] | None = None  # (offset, length), ranges mode
    ranges: tuple[tuple[int, int], ...] = ()  # (offset, length) per segment, ranges mode


@dataclass(frozen=True, slots=True)
class Track:
    """One DASH Representation: a video rung or the shared audio."""

    id: str
    kind: Literal["video", "audio"]
    bandwidth: int
    codecs: str
    durations: tuple[float, ...]
    addressing: Addressing
    width: int = 0
    height: int = 0
    frame_rate: float = 0.0
    sampling_rate: int = 0
    channels: int = 0


def addressing(directory: str, segments: str, playlist: MediaPlaylist) -> Addressing:
    """How the MPD addresses a rendition, from its layout and the playlist ffmpeg wrote.

    `segments` is the layout's pattern (``240p/seg_%05d.m4s``) or single media file; the
    playlist's URIs (relative to `directory`) must be the files that pattern names, in
    order, or the template would point at files that do not exist."""
    init = playlist.init
    if init is None:
        raise DashError(f"{directory}: DASH needs fMP4 segments with an init segment")
    if playlist.segments[0].length is not None:
        if init.length is None or init.start is None:
            raise DashError(f"{directory}: single-file playlist has no init byte range")
        media = f"{directory}/{init.uri}"
        if any(f"{directory}/{s.uri}" != media for s in playlist.segments):
            raise DashError(f"{directory}: single-file segments are not all in {media}")
        ranges = tuple((s.start or 0, s.length or 0) for s in playlist.segments)
        return Addressing("ranges", media, init_range=(init.start, init.length), ranges=ranges)
    m = _PATTERN.match(segments)
    if m is None or m["dir"] != directory:
        raise DashError(f"{directory}: segment pattern {segments!r} is not numbered files")
    width, start = int(m["width"]), 1
    for i, seg in enumerate(playlist.segments):
        expected = f"{m['stem']}{start + i:0{width}d}{m['ext']}"
        if seg.uri != expected:
            raise DashError(f"{directory}: segment {seg.uri!r} is not the expected {expected!r}")
    media = f"{directory}/{m['stem']}$Number%0{width}d${m['ext']}"
    return Addressing("template", f"{directory}/{init.uri}", media, start)


def iso_duration(seconds: float) -> str:
    """xs:duration as DASH uses it: ``PT6.016S``."""
    if seconds < 0 or not math.isfinite(seconds):
        raise DashError(f"bad duration {seconds!r}")
    return f"PT{seconds:.3f}S"


def frame_rate(fps: float) -> str:
    """The FrameRateType: an integer, or N/D (NTSC rates as 30000/1001)."""
    if fps <= 0 or not math.isfinite(fps):
        raise DashError(f"bad frame rate {fps!r}")
    if abs(fps - round(fps)) < 1e-3:
        return str(round(fps))
    ntsc = Fraction(round(fps * 1.001) * 1000, 1001)
    if abs(float(ntsc) - fps) < 1e-3:
        return f"{ntsc.numerator}/{ntsc.denominator}"
    f = Fraction(fps).limit_denominator(1001)
    return f"{f.numerator}/{f.denominator}"


def timeline(durations: Sequence[float]) -> list[tuple[int, int, int]]:
    """``(t, d, r)`` runs in TIMESCALE units. Start times are rounded from the running sum
    so rounding never accumulates into drift; equal neighbours collapse into one ``r``."""
    starts = [0]
    total = 0.0
    for d in durations:
        total += d
        starts.append(round(total * TIMESCALE))
    runs: list[tuple[int, int, int]] = []
    for i in range(len(durations)):
        d = starts[i + 1] - starts[i]
        if d <= 0:
            raise DashError(f"segment {i + 1} has no duration")
        if runs and runs[-1][1] == d:
            t, _, r = runs[-1]
            runs[-1] = (t, d, r + 1)
        else:
            runs.append((starts[i], d, 0))
    return runs


def _sub(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, tag, {k.rstrip("_"): v for k, v in attrs.items()})


def _timeline(parent: ET.Element, durations: Sequence[float]) -> None:
    tl = _sub(parent, "SegmentTimeline")
    for i, (t, d, r) in enumerate(timeline(durations)):
        attrs = {"t": str(t)} if i == 0 else {}
        attrs["d"] = str(d)
        if r:
            attrs["r"] = str(r)
        _sub(tl, "S", **attrs)


def _segments(rep: ET.Element, track: Track) -> None:
    a = track.addressing
    if a.kind == "template":
        tmpl = _sub(rep, "SegmentTemplate", timescale=str(TIMESCALE), initialization=a.init,
                    media=a.media, startNumber=str(a.start_number))
        _timeline(tmpl, track.durations)
        return
    if a.init_range is None:
        raise DashError(f"{track.id}: byte-range addressing without an init range")
    # The BaseURL is the one media file; the segment list's ranges address into it.
    _sub(rep, "BaseURL").text = a.init
    lst = _sub(rep, "SegmentList", timescale=str(TIMESCALE))
    off, length = a.init_range
    _sub(lst, "Initialization", range=f"{off}-{off + length - 1}")
    _timeline(lst, track.durations)
    for off, length in a.ranges:
        _sub(lst, "SegmentURL", mediaRange=f"{off}-{off + length - 1}")


def uuid_form(kid: bytes) -> str:
    """A KID as DASH writes ``cenc:default_KID``: 8-4-4-4-12 hex."""
    h = kid.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _protection(aset: ET.Element, kid: bytes) -> None:
    """ContentProtection of a CENC adaptation set: the scheme and default KID
    (ISO/IEC 23009-1 §5.8.5.2, 23001-7 §11.2), then ClearKey, the system browsers offer."""
    _sub(aset, "ContentProtection", schemeIdUri=MP4_PROTECTION, value="cenc",
         **{"cenc:default_KID": uuid_form(kid)})
    _sub(aset, "ContentProtection", schemeIdUri=CLEARKEY_SCHEME, value="ClearKey1.0")


def _representation(aset: ET.Element, track: Track) -> None:
    attrs = {"id": track.id, "bandwidth": str(track.bandwidth), "codecs": track.codecs}
    if track.kind == "video":
        attrs |= {"width": str(track.width), "height": str(track.height),
                  "frameRate": frame_rate(track.frame_rate), "sar": "1:1"}
    else:
        attrs["audioSamplingRate"] = str(track.sampling_rate)
    rep = _sub(aset, "Representation", **attrs)
    if track.kind == "audio":
        _sub(rep, "AudioChannelConfiguration", schemeIdUri=CHANNEL_SCHEME,
             value=str(track.channels))
    _segments(rep, track)


def mpd(
    video: Sequence[Track],
    audio: Track | None,
    *,
    duration: float,
    segment_seconds: float,
    default_kid: bytes | None = None,
) -> str:
    """The static MPD of a packaged title: one period, a video adaptation set with one
    representation per rung (ladder order) and, if the title has sound, an audio one."""
    if not video:
        raise DashError("a DASH presentation needs at least one video track")
    kinds = {t.addressing.kind for t in [*video, *([audio] if audio else [])]}
    if len(kinds) != 1:
        raise DashError("every track must be addressed the same way")
    profile = PROFILE_LIVE if kinds == {"template"} else PROFILE_FULL
    longest = max(max(t.durations) for t in [*video, *([audio] if audio else [])])
    root = ET.Element("MPD", {
        "xmlns": MPD_NS,
        "type": "static",
        "profiles": profile,
        "mediaPresentationDuration": iso_duration(duration),
        "minBufferTime": iso_duration(segment_seconds),
        "maxSegmentDuration": iso_duration(longest),
        **({"xmlns:cenc": CENC_NS} if default_kid is not None else {}),
    })
    period = _sub(root, "Period", id="0", start="PT0S")
    vset = _sub(
        period, "AdaptationSet", id="0", contentType="video", mimeType="video/mp4",
        segmentAlignment="true", startWithSAP="1",
        maxWidth=str(max(t.width for t in video)), maxHeight=str(max(t.height for t in video)),
        maxFrameRate=frame_rate(max(t.frame_rate for t in video)),
    )
    if default_kid is not None:
        _protection(vset, default_kid)
    for track in video:
        _representation(vset, track)
    if audio is not None:
        aset = _sub(period, "AdaptationSet", id="1", contentType="audio", mimeType="audio/mp4",
                    segmentAlignment="true", startWithSAP="1", lang="und")
        if default_kid is not None:
            _protection(aset, default_kid)
        _representation(aset, audio)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
