"""Media types and Cache-Control policy for what the packager writes, pure.

Segments and init segments never change once published (a republished title gets new
names), so caches may keep them forever without asking (RFC 8246 ``immutable``). VOD
playlists rarely change but may be fixed after publishing, so they get a moderate
lifetime; live playlists change every segment and must stay fresh.
"""

from __future__ import annotations

from typing import Final

TYPES: Final[dict[str, str]] = {
    ".m3u8": "application/vnd.apple.mpegurl",  # RFC 8216 §4
    ".mp4": "video/mp4",
    ".m4s": "video/mp4",  # CMAF/fMP4 media segments (ISO BMFF)
    ".m4v": "video/mp4",
    ".m4a": "audio/mp4",
    ".ts": "video/mp2t",
    ".aac": "audio/aac",
    ".vtt": "text/vtt",
    ".webvtt": "text/vtt",
    ".json": "application/json",
    ".mpd": "application/dash+xml",
    ".key": "application/octet-stream",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
DEFAULT_TYPE: Final = "application/octet-stream"

IMMUTABLE: Final = "public, max-age=31536000, immutable"
VOD_PLAYLIST: Final = "public, max-age=300"
#: Live playlists: about one segment; RFC 8216 §6.2.1 has clients reload every target duration.
LIVE_PLAYLIST: Final = "public, max-age=1"
#: manifest.json is what appliances fill from; it may be republished.
MANIFEST: Final = "public, max-age=60"
DEFAULT_CACHE: Final = "public, max-age=3600"

_SEGMENT_SUFFIXES: Final = frozenset(
    {".m4s", ".ts", ".mp4", ".m4v", ".m4a", ".aac", ".vtt", ".webvtt"}
)


def _suffix(path: str) -> str:
    name = path.rpartition("/")[2]
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def media_type(path: str) -> str:
    """The Content-Type for a content-store path (by its extension)."""
    return TYPES.get(_suffix(path), DEFAULT_TYPE)


def cache_control(path: str, *, live: bool = False) -> str:
    """The Cache-Control policy for a content-store path of a VOD or live title."""
    suffix = _suffix(path)
    if suffix == ".m3u8" or suffix == ".mpd":
        return LIVE_PLAYLIST if live else VOD_PLAYLIST
    if suffix in _SEGMENT_SUFFIXES:
        return IMMUTABLE
    if path.rpartition("/")[2] == "manifest.json":
        return MANIFEST
    return DEFAULT_CACHE
