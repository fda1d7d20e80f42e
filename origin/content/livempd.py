"""The DASH manifest of a live event, pure: what the origin kept in, MPD text out.

The origin writes ``manifest.mpd`` beside the HLS playlists from the same kept segments
(the same files, addressed with ``SegmentTemplate`` + ``$Number$``), so a DASH player sees
what an HLS player sees. While the event runs the MPD is ``dynamic`` (ISO/IEC 23009-1
§5.4): players reload it every ``minimumUpdatePeriod`` (one segment), may seek back
``timeShiftBufferDepth`` (the window) and play ``suggestedPresentationDelay`` behind live.
When the input ends it becomes ``static`` with every segment still on disk.

Timing: every pipeline stamps segment N with decode time N x SEG seconds after the Unix
epoch (`packager.livegraph`), so ``availabilityStartTime`` is the epoch itself and
``presentationTimeOffset`` 0: a media timestamp *is* its wall-clock time, and
``startNumber`` is the HLS media sequence number of the first segment offered. DASH has
no gap marker and ``$Number$`` counts timeline entries, so a hole (no pipeline delivered a
number) ends what the dynamic MPD offers: it lists the run of segments after the newest
hole.

An event with a separate audio rendition (the event's ``audio``) gets a second
adaptation set for it, addressed the same way; the video Representations then state the
video's own codec and bandwidth (a rendition's HLS figures include the audio it is played
with). An event whose renditions carry their sound muxed (an event document without
``audio``) has multiplexed Representations, which the schema allows but DASH players do
not play.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import Final

from origin.content.livestate import Kept, in_window
from vcdn.schemas import LiveAudio, Rendition

MPD_NAME: Final = "manifest.mpd"
MPD_NS: Final = "urn:mpeg:dash:schema:mpd:2011"
PROFILE_LIVE: Final = "urn:mpeg:dash:profile:isoff-live:2011"
TIMESCALE: Final = 1000  # milliseconds: kept segment times are measured to the ms
EPOCH: Final = "1970-01-01T00:00:00Z"
UTC_DIRECT: Final = "urn:mpeg:dash:utc:direct:2014"
CHANNEL_SCHEME: Final = "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
#: Played this many segments behind the live edge, unless the player knows better.
DELAY_SEGMENTS: Final = 3


def iso_duration(seconds: float) -> str:
    """xs:duration as DASH uses it: ``PT6.016S``."""
    return f"PT{max(0.0, seconds):.3f}S"


def iso_time(seconds: float) -> str:
    """xs:dateTime in UTC, milliseconds."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def frame_rate(fps: float) -> str:
    """The FrameRateType: an integer or N/D (30000/1001)."""
    if abs(fps - round(fps)) < 1e-3:
        return str(max(1, round(fps)))
    f = Fraction(fps).limit_denominator(1001)
    return f"{f.numerator}/{f.denominator}"


def offered(kept: Mapping[int, Kept], window: float | None) -> list[int]:
    """The MSNs the MPD lists: all kept (static), or the window's contiguous run up to the
    newest segment (dynamic; `$Number$` cannot skip a hole)."""
    msns = sorted(kept) if window is None else in_window(kept, window)
    if window is None or not msns:
        return msns
    start = len(msns) - 1
    while start > 0 and msns[start - 1] == msns[start] - 1:
        start -= 1
    return msns[start:]


def _timeline(parent: ET.Element, kept: Mapping[int, Kept], msns: Sequence[int]) -> None:
    """``S`` runs in TIMESCALE units; start times rounded from the kept start times, so
    rounding never accumulates, and equal neighbours collapse into one ``r``."""
    tl = ET.SubElement(parent, "SegmentTimeline")
    runs: list[list[int]] = []  # [t, d, r]
    for msn in msns:
        seg = kept[msn]
        t = round(seg.start * TIMESCALE)
        d = round(seg.end * TIMESCALE) - t
        if runs and runs[-1][1] == d and runs[-1][0] + d * (runs[-1][2] + 1) == t:
            runs[-1][2] += 1
        else:
            runs.append([t, d, 0])
    for t, d, r in runs:
        attrs = {"t": str(t), "d": str(d)}
        if r:
            attrs["r"] = str(r)
        ET.SubElement(tl, "S", attrs)


def video_codecs(rendition: Rendition, audio: LiveAudio | None) -> str:
    """A video rendition's own codecs: its HLS CODECS less those of the separate audio."""
    if audio is None:
        return rendition.codecs
    theirs = {c.strip() for c in audio.codecs.split(",")}
    return ",".join(c for c in rendition.codecs.split(",") if c.strip() not in theirs)


def _template(
    rep: ET.Element, name: str, kept: Mapping[int, Kept], msns: Sequence[int], first: float
) -> None:
    tmpl = ET.SubElement(rep, "SegmentTemplate", {
        "timescale": str(TIMESCALE),
        # A static MPD's presentation starts at its first segment.
        "presentationTimeOffset": str(round(first * TIMESCALE)),
        "initialization": f"{name}/init.mp4",
        "media": f"{name}/seg_$Number$.m4s",
        "startNumber": str(msns[0] if msns else 0),
    })
    if msns:
        _timeline(tmpl, kept, msns)


def live_mpd(
    renditions: Sequence[Rendition],
    kept: Mapping[str, Mapping[int, Kept]],
    segment_seconds: float,
    window: float,
    *,
    ended: bool,
    now: float,
    audio: LiveAudio | None = None,
) -> str:
    """The event's MPD: dynamic while it runs, static once `ended`. `kept` maps each
    rendition's name (the audio's too) to its kept segments."""
    names = [r.name for r in renditions] + ([audio.name] if audio is not None else [])
    lists = {n: offered(kept.get(n, {}), None if ended else window) for n in names}
    longest = max((kept[n][m].duration for n in names for m in lists[n]),
                  default=segment_seconds)
    attrs = {
        "xmlns": MPD_NS,
        "profiles": PROFILE_LIVE,
        "minBufferTime": iso_duration(segment_seconds),
        "maxSegmentDuration": iso_duration(longest),
    }
    if ended:
        first = min((kept[n][lists[n][0]].start for n in names if lists[n]), default=0.0)
        last = max((kept[n][lists[n][-1]].end for n in names if lists[n]), default=0.0)
        attrs |= {"type": "static", "mediaPresentationDuration": iso_duration(last - first)}
    else:
        first = 0.0
        attrs |= {
            "type": "dynamic",
            "availabilityStartTime": EPOCH,
            "publishTime": iso_time(now),
            "minimumUpdatePeriod": iso_duration(segment_seconds),
            "timeShiftBufferDepth": iso_duration(window),
            "suggestedPresentationDelay": iso_duration(DELAY_SEGMENTS * segment_seconds),
        }
    root = ET.Element("MPD", attrs)
    period = ET.SubElement(root, "Period", {"id": "0", "start": "PT0S"})
    aset_attrs = {
        "id": "0", "contentType": "video", "mimeType": "video/mp4",
        "segmentAlignment": "true", "startWithSAP": "1",
        "maxWidth": str(max(r.width for r in renditions)),
        "maxHeight": str(max(r.height for r in renditions)),
    }
    codecs = {r.name: video_codecs(r, audio) for r in renditions}
    if any("," in c for c in codecs.values()):
        # Renditions that carry their sound in the same file (multiplexed
        # Representations, §5.3.3): not one content type.
        del aset_attrs["contentType"]
    aset = ET.SubElement(period, "AdaptationSet", aset_attrs)
    if not ended:
        # ISO/IEC 23009-1 §5.8.4.11: the time this MPD was written, for players to set
        # their clocks by (the default source of some players is on the internet). At most
        # a segment and a cache lifetime old, which only makes a player start later.
        ET.SubElement(root, "UTCTiming", {"schemeIdUri": UTC_DIRECT, "value": iso_time(now)})
    for r in renditions:
        bandwidth = r.bandwidth - (audio.bandwidth if audio is not None else 0)
        rep = ET.SubElement(aset, "Representation", {
            "id": r.name, "bandwidth": str(max(1, bandwidth)), "codecs": codecs[r.name],
            "width": str(r.width), "height": str(r.height),
            "frameRate": frame_rate(r.frame_rate), "sar": "1:1",
        })
        _template(rep, r.name, kept.get(r.name, {}), lists[r.name], first)
    if audio is not None:
        audio_set = ET.SubElement(period, "AdaptationSet", {
            "id": "1", "contentType": "audio", "mimeType": "audio/mp4",
            "segmentAlignment": "true", "startWithSAP": "1", "lang": "und",
        })
        rep = ET.SubElement(audio_set, "Representation", {
            "id": audio.name, "bandwidth": str(audio.bandwidth), "codecs": audio.codecs,
            "audioSamplingRate": str(audio.sampling_rate),
        })
        ET.SubElement(rep, "AudioChannelConfiguration", {
            "schemeIdUri": CHANNEL_SCHEME, "value": str(audio.channels),
        })
        _template(rep, audio.name, kept.get(audio.name, {}), lists[audio.name], first)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
