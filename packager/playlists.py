"""HLS playlists, pure: read what ffmpeg wrote, measure it, write the master playlist.

ffmpeg writes each rendition's media playlist; we read back segment durations and sizes to
state bandwidths that are measured rather than requested (RFC 8216 §4.3.4.2: BANDWIDTH is
the peak segment bit rate, AVERAGE-BANDWIDTH the average), and write the master playlist
ourselves so CODECS can carry the RFC 6381 strings of the encoded bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

PLAYLIST_MEDIA_TYPE: Final = "application/vnd.apple.mpegurl"


class PlaylistError(ValueError):
    """A media playlist is not the VOD playlist we expect ffmpeg to have written."""


@dataclass(frozen=True, slots=True)
class Segment:
    duration: float
    uri: str
    length: int | None = None  # EXT-X-BYTERANGE length, single-file mode
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    version: int
    target_duration: int
    segments: tuple[Segment, ...]
    map_uri: str | None = None
    map_length: int | None = None
    map_offset: int | None = None

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)


def _byterange(value: str, next_offset: int) -> tuple[int, int]:
    # RFC 8216 §4.3.2.2: <n>[@<o>]; without @o the range follows the previous one.
    length, _, offset = value.partition("@")
    return int(length), int(offset) if offset else next_offset


def _attributes(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in _split_attributes(text):
        key, _, value = part.partition("=")
        out[key.strip()] = value.strip().strip('"')
    return out


def _split_attributes(text: str) -> list[str]:
    parts, current, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    if current:
        parts.append(current)
    return parts


def parse_media(text: str) -> MediaPlaylist:
    """Parse the subset of RFC 8216 a VOD media playlist from ffmpeg uses."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError("playlist does not start with #EXTM3U")
    version, target = 1, None
    map_uri = map_length = map_offset = None
    segments: list[Segment] = []
    duration: float | None = None
    pending_range: tuple[int, int] | None = None
    next_offset = 0
    try:
        for line in lines[1:]:
            tag, _, value = line.partition(":")
            if tag == "#EXT-X-VERSION":
                version = int(value)
            elif tag == "#EXT-X-TARGETDURATION":
                target = int(value)
            elif tag == "#EXT-X-MAP":
                attrs = _attributes(value)
                map_uri = attrs["URI"]
                if "BYTERANGE" in attrs:
                    map_length, map_offset = _byterange(attrs["BYTERANGE"], 0)
            elif tag == "#EXTINF":
                duration = float(value.split(",")[0])
            elif tag == "#EXT-X-BYTERANGE":
                pending_range = _byterange(value, next_offset)
            elif not line.startswith("#"):
                if duration is None:
                    raise PlaylistError(f"segment {line!r} has no #EXTINF")
                length = offset = None
                if pending_range is not None:
                    length, offset = pending_range
                    next_offset = offset + length
                segments.append(Segment(duration, line, length, offset))
                duration, pending_range = None, None
    except (ValueError, KeyError) as exc:
        raise PlaylistError(f"malformed playlist line: {exc}") from None
    if target is None:
        raise PlaylistError("playlist has no #EXT-X-TARGETDURATION")
    if not segments:
        raise PlaylistError("playlist has no segments")
    return MediaPlaylist(version, target, tuple(segments), map_uri, map_length, map_offset)


def required_target_duration(playlist: MediaPlaylist) -> int:
    """RFC 8216 §4.3.3.1: each EXTINF rounded to the nearest integer must be <= the target."""
    # Round half up, as the RFC's "nearest integer" reads; Python's round() is half-even.
    return max(math.floor(s.duration + 0.5) for s in playlist.segments)


def fix_target_duration(text: str) -> str:
    """Raise EXT-X-TARGETDURATION if a segment would break the rule; else `text` as is."""
    playlist = parse_media(text)
    needed = required_target_duration(playlist)
    if playlist.target_duration >= needed:
        return text
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith("#EXT-X-TARGETDURATION:"):
            line = f"#EXT-X-TARGETDURATION:{needed}\n"
        out.append(line)
    return "".join(out)


def peak_bitrate(durations: Sequence[float], sizes: Sequence[int], target: float) -> int:
    """Peak segment bit rate (bits/s): the highest rate over any run of consecutive
    segments lasting 0.5 to 1.5 target durations (the definition rfc8216bis spells out),
    or over single segments when no run fits (a title shorter than half a target)."""
    if len(durations) != len(sizes) or not durations:
        raise ValueError("need one size per segment")
    best = 0.0
    n = len(durations)
    for i in range(n):
        total_d, total_b = 0.0, 0
        for j in range(i, n):
            total_d += durations[j]
            total_b += sizes[j]
            if total_d > 1.5 * target:
                break
            if total_d >= 0.5 * target and total_d > 0:
                best = max(best, total_b * 8 / total_d)
    if best == 0.0:
        best = max(b * 8 / d for d, b in zip(durations, sizes, strict=True) if d > 0)
    return math.ceil(best)


def average_bitrate(durations: Sequence[float], sizes: Sequence[int]) -> int:
    """Average bit rate over the whole rendition (bits/s)."""
    total = sum(durations)
    return math.ceil(sum(sizes) * 8 / total) if total > 0 else 0


@dataclass(frozen=True, slots=True)
class Variant:
    uri: str
    bandwidth: int
    average_bandwidth: int
    codecs: str
    width: int
    height: int
    frame_rate: float
    audio: str | None = None  # GROUP-ID of the shared audio rendition


@dataclass(frozen=True, slots=True)
class AudioRendition:
    """The shared audio rendition (EXT-X-MEDIA TYPE=AUDIO)."""

    group: str
    uri: str
    channels: int


def master_playlist(
    variants: Sequence[Variant], version: int, audio: AudioRendition | None = None
) -> str:
    """The multivariant playlist, variants in ladder order (tallest first): a player with
    no bandwidth estimate yet starts with the first one listed."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio is not None:
        # RFC 8216 §4.3.4.1: the one rendition of the group is its default.
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{audio.group}",NAME="audio",DEFAULT=YES,'
            f'AUTOSELECT=YES,CHANNELS="{audio.channels}",URI="{audio.uri}"'
        )
    for v in variants:
        # RFC 8216 §4.3.4.2: FRAME-RATE is a decimal rounded to three places.
        group = f',AUDIO="{v.audio}"' if v.audio is not None else ""
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={v.bandwidth},AVERAGE-BANDWIDTH={v.average_bandwidth},"
            f'CODECS="{v.codecs}",RESOLUTION={v.width}x{v.height},'
            f"FRAME-RATE={v.frame_rate:.3f}{group}"
        )
        lines.append(v.uri)
    return "\n".join(lines) + "\n"
