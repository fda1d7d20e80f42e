"""HLS playlists, pure: repair what ffmpeg wrote, measure it, write the master playlist.

ffmpeg writes each rendition's media playlist; we read back (`vcdn.hlsplaylist`) segment
durations and sizes to state bandwidths that are measured rather than requested (RFC 8216
§4.3.4.2: BANDWIDTH is the peak segment bit rate, AVERAGE-BANDWIDTH the average), and write
the master playlist ourselves so CODECS can carry the RFC 6381 strings of the encoded bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from vcdn.hlsplaylist import MediaPlaylist, parse_media

PLAYLIST_MEDIA_TYPE: Final = "application/vnd.apple.mpegurl"


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
