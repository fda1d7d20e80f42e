"""Reading back what ffmpeg wrote for one rendition: its playlist, sizes and codecs.

Everything the master playlist and manifest say about a rendition is measured here from
the files themselves: segment sizes from the file system (or the byte ranges in
single-file mode), durations from the playlist, codec strings from the encoded decoder
configuration via ffprobe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.codecs import (
    CodecError,
    aac_codec,
    aac_codec_from_config,
    avc_codec,
    avc_codec_from_profile,
    parse_hexdump,
)
from packager.graph import Layout
from packager.ladder import Rung
from packager.playlists import Variant, average_bitrate, fix_target_duration, peak_bitrate
from packager.probe import ffprobe_json
from vcdn.errors import MediaError
from vcdn.hlsplaylist import MediaPlaylist, parse_media
from vcdn.schemas import Rendition


@dataclass(frozen=True, slots=True)
class RenditionReport:
    rung: Rung
    playlist: MediaPlaylist
    variant: Variant
    rendition: Rendition
    layout: Layout
    video_bandwidth: int  # the video track alone (DASH states tracks separately)
    video_codecs: str


def read_playlist(title_dir: Path, layout: Layout) -> MediaPlaylist:
    """Parse the rendition's playlist, first raising its target duration if ffmpeg's
    rounding would break RFC 8216 §4.3.3.1."""
    path = title_dir / layout.playlist
    try:
        text = path.read_text()
    except OSError as exc:
        raise MediaError(f"ffmpeg did not write {layout.playlist}: {exc.strerror}.") from None
    fixed = fix_target_duration(text)
    if fixed != text:
        path.write_text(fixed)
    return parse_media(fixed)


def segment_sizes(title_dir: Path, layout: Layout, playlist: MediaPlaylist) -> list[int]:
    """Bytes per segment: the byte-range length, or the segment file's size."""
    sizes = []
    for seg in playlist.segments:
        if seg.length is not None:
            sizes.append(seg.length)
        else:
            sizes.append((title_dir / layout.directory / seg.uri).stat().st_size)
    return sizes


def probe_target(title_dir: Path, layout: Layout, playlist: MediaPlaylist) -> Path:
    """The file whose header holds the decoder configuration."""
    if playlist.init is not None:
        return title_dir / layout.directory / playlist.init.uri
    return title_dir / layout.directory / playlist.segments[0].uri


def audio_codec_from_probe(data: dict[str, Any]) -> str:
    """``mp4a.40.N`` from ``ffprobe -show_streams -show_data`` JSON."""
    streams = data.get("streams") or []
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if audio is None or audio.get("codec_name") != "aac":
        raise MediaError("the encoded rendition has no AAC audio stream")
    try:
        return aac_codec_from_config(parse_hexdump(str(audio.get("extradata", ""))))
    except CodecError:
        return aac_codec(str(audio.get("profile")))


def codecs_from_probe(data: dict[str, Any], has_audio: bool) -> str:
    """``avc1.PPCCLL[,mp4a.40.N]`` from ``ffprobe -show_streams -show_data`` JSON."""
    streams = data.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    if video is None or video.get("codec_name") != "h264":
        raise MediaError("the encoded rendition has no H.264 video stream")
    try:
        avc = avc_codec(parse_hexdump(str(video.get("extradata", ""))))
    except CodecError:
        avc = avc_codec_from_profile(str(video.get("profile")), int(video.get("level", 0)))
    if not has_audio:
        return avc
    return f"{avc},{audio_codec_from_probe(data)}"


@dataclass(frozen=True, slots=True)
class AudioReport:
    """The shared audio rendition of an fMP4 title, measured like a video one."""

    layout: Layout
    playlist: MediaPlaylist
    bandwidth: int
    average_bandwidth: int
    codecs: str


def describe_audio(title_dir: Path, layout: Layout) -> AudioReport:
    """Measure the shared audio rendition."""
    playlist = read_playlist(title_dir, layout)
    sizes = segment_sizes(title_dir, layout, playlist)
    durations = [s.duration for s in playlist.segments]
    data = ffprobe_json(
        probe_target(title_dir, layout, playlist), "show_data", what="Encoded file"
    )
    try:
        codecs = audio_codec_from_probe(data)
    except CodecError as exc:
        raise MediaError(f"cannot state CODECS for the audio: {exc}") from None
    peak = peak_bitrate(durations, sizes, playlist.target_duration)
    return AudioReport(layout, playlist, peak, average_bitrate(durations, sizes), codecs)


def describe(
    title_dir: Path,
    rung: Rung,
    layout: Layout,
    fps: float,
    has_audio: bool,
    audio: AudioReport | None = None,
) -> RenditionReport:
    """Measure one rendition and say what the master playlist and manifest need.

    With a shared `audio` rendition, the variant's bandwidth and codecs include it
    (RFC 8216 §4.3.4.2: BANDWIDTH covers every rendition a player fetches with it); the
    report keeps the video's own figures for DASH, which states each track separately."""
    playlist = read_playlist(title_dir, layout)
    sizes = segment_sizes(title_dir, layout, playlist)
    durations = [s.duration for s in playlist.segments]
    data = ffprobe_json(
        probe_target(title_dir, layout, playlist), "show_data", what="Encoded file"
    )
    try:
        codecs = codecs_from_probe(data, has_audio)
    except CodecError as exc:
        raise MediaError(f"cannot state CODECS for {rung.name}: {exc}") from None
    uri = layout.playlist
    video_peak = peak_bitrate(durations, sizes, playlist.target_duration)
    video_average = average_bitrate(durations, sizes)
    peak, average = video_peak, video_average
    if audio is not None:
        peak += audio.bandwidth
        average += audio.average_bandwidth
        codecs_all = f"{codecs},{audio.codecs}"
    else:
        codecs_all = codecs
    frame_rate = round(fps, 3)
    variant = Variant(uri, peak, average, codecs_all, rung.width, rung.height, frame_rate,
                      audio="audio" if audio is not None else None)
    rendition = Rendition(
        name=rung.name,
        width=rung.width,
        height=rung.height,
        bandwidth=peak,
        average_bandwidth=average,
        codecs=codecs_all,
        frame_rate=frame_rate,
        playlist=uri,
    )
    return RenditionReport(rung, playlist, variant, rendition, layout, video_peak, codecs)
