"""HLS playlists read, pure (no I/O): RFC 8216 master and media playlists.

The one reader of the project: the packager reads back what ffmpeg wrote (durations,
byte ranges, the init section) to measure bandwidths, build the DASH manifest and encrypt
segments, and the failover client reads what an appliance serves to fetch every byte of
a title. Only what they need: the variants of a master playlist, and of a media playlist
its version, target duration, init section (EXT-X-MAP), segments with their durations and
byte ranges (EXT-X-BYTERANGE, for single-file packaging) and whether it has ended. URIs
stay as written (relative or absolute); the reader resolves them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from vcdn.errors import ClientError

# RFC 8216 §4.2: attribute lists are comma-separated NAME=VALUE; quoted strings may hold commas.
_ATTR_RE: Final = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')
_BYTERANGE_RE: Final = re.compile(r"^(\d+)(?:@(\d+))?$")
_INTEGER_RE: Final = re.compile(r"^\d{1,20}$")


class PlaylistError(ClientError, ValueError):
    """A playlist is not one RFC 8216 allows (or lacks what a VOD playlist needs)."""


@dataclass(frozen=True, slots=True)
class Variant:
    """One EXT-X-STREAM-INF entry of a master playlist."""

    uri: str
    bandwidth: int
    resolution: str = ""
    codecs: str = ""


@dataclass(frozen=True, slots=True)
class Part:
    """A resource to fetch: a URI and, for EXT-X-BYTERANGE, the bytes [start, start+length)."""

    uri: str
    start: int | None = None
    length: int | None = None

    @property
    def range_header(self) -> str | None:
        if self.start is None or self.length is None:
            return None
        # RFC 9110 §14.1.2: last-pos is inclusive.
        return f"bytes={self.start}-{self.start + self.length - 1}"


@dataclass(frozen=True, slots=True)
class Segment(Part):
    """A media segment: a `Part` that plays for `duration` seconds (its EXTINF)."""

    duration: float = 0.0


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    version: int
    target_duration: int
    init: Part | None
    segments: tuple[Segment, ...]
    ended: bool

    @property
    def durations(self) -> tuple[float, ...]:
        return tuple(s.duration for s in self.segments)

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)


def parse_attributes(text: str) -> dict[str, str]:
    """``BANDWIDTH=1,CODECS="a,b"`` → {"BANDWIDTH": "1", "CODECS": "a,b"}."""
    return {m.group(1): m.group(2).strip('"') for m in _ATTR_RE.finditer(text)}


def _lines(text: str, what: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError(f"The {what} does not start with #EXTM3U; it is not an HLS playlist.")
    return lines


def _integer(tag: str, value: str) -> int:
    # RFC 8216 §4.2: a decimal-integer, 0 to 2^64-1.
    if not _INTEGER_RE.match(value.strip()):
        raise PlaylistError(f"{tag} {value!r} is not a whole number.")
    return int(value)


def parse_master(text: str) -> list[Variant]:
    """The variants of a master playlist, highest bandwidth first."""
    lines = _lines(text, "master playlist")
    variants: list[Variant] = []
    pending: dict[str, str] | None = None
    for line in lines[1:]:
        if line.startswith("#EXT-X-STREAM-INF:"):
            pending = parse_attributes(line.partition(":")[2])
        elif line.startswith("#"):
            continue
        elif pending is not None:
            try:
                bandwidth = int(pending.get("BANDWIDTH", "0"))
            except ValueError:
                raise PlaylistError(f"Variant {line!r} has a non-numeric BANDWIDTH.") from None
            variants.append(
                Variant(line, bandwidth, pending.get("RESOLUTION", ""), pending.get("CODECS", ""))
            )
            pending = None
    if not variants:
        raise PlaylistError("The master playlist lists no variant stream (EXT-X-STREAM-INF).")
    return sorted(variants, key=lambda v: v.bandwidth, reverse=True)


def _byterange(value: str, previous_end: int | None) -> tuple[int, int]:
    m = _BYTERANGE_RE.match(value.strip())
    if not m:
        raise PlaylistError(f"EXT-X-BYTERANGE {value!r} is not LENGTH[@OFFSET].")
    length = int(m.group(1))
    if m.group(2) is not None:
        return int(m.group(2)), length
    # RFC 8216 §4.3.2.2: without an offset the range follows the previous segment's.
    if previous_end is None:
        raise PlaylistError("EXT-X-BYTERANGE without an offset follows no earlier range.")
    return previous_end, length


def parse_media(text: str) -> MediaPlaylist:
    """The init section and segments of a media playlist, in play order."""
    lines = _lines(text, "media playlist")
    version = 1
    target: int | None = None
    init: Part | None = None
    segments: list[Segment] = []
    duration: float | None = None
    pending_range: tuple[int, int] | None = None
    previous_end: int | None = None
    ended = False
    for line in lines[1:]:
        tag, _, value = line.partition(":")
        if tag == "#EXT-X-VERSION":
            version = _integer(tag[1:], value)
        elif tag == "#EXT-X-TARGETDURATION":
            target = _integer(tag[1:], value)
        elif tag == "#EXT-X-MAP":
            attrs = parse_attributes(value)
            if "URI" not in attrs:
                raise PlaylistError("EXT-X-MAP has no URI attribute.")
            start = length = None
            if "BYTERANGE" in attrs:
                start, length = _byterange(attrs["BYTERANGE"], 0)
            init = Part(attrs["URI"], start, length)
        elif tag == "#EXTINF":
            try:
                duration = float(value.split(",")[0])
            except ValueError:
                raise PlaylistError(f"EXTINF {value!r} does not start with a duration.") from None
        elif tag == "#EXT-X-BYTERANGE":
            pending_range = _byterange(value, previous_end)
        elif tag == "#EXT-X-ENDLIST":
            ended = True
        elif not line.startswith("#"):
            if duration is None:
                raise PlaylistError(f"Segment {line!r} has no EXTINF before it.")
            if pending_range is not None:
                segments.append(Segment(line, pending_range[0], pending_range[1], duration))
                previous_end = pending_range[0] + pending_range[1]
            else:
                segments.append(Segment(line, duration=duration))
            duration, pending_range = None, None
    if target is None:
        # RFC 8216 §4.3.3.1: the tag is REQUIRED.
        raise PlaylistError("The media playlist has no EXT-X-TARGETDURATION.")
    if not segments:
        raise PlaylistError("The media playlist lists no segment.")
    return MediaPlaylist(version, target, init, tuple(segments), ended)
