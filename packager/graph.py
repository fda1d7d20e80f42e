"""The ffmpeg command for a title, pure: a ladder in, an ffmpeg-python graph and argv out.

One process per title: the source is decoded once, ``split`` feeds one scaler and one
x264 encoder per rung, and each rung has its own HLS muxer writing its own directory.
Switching between renditions at any segment boundary works because every encoder gets
the same forced keyframe times (``-force_key_frames expr:gte(t,n_forced*SEG)``), scene-cut
keyframes are off (``-sc_threshold 0``) and the GOP never ends before the next forced
keyframe; the HLS muxers cut at the first keyframe at or after each multiple of
``hls_time``, which is then the same instant in every rendition.

Separate muxers (rather than one muxer with ``var_stream_map``) give each rendition plain
file names (``720p/init.mp4``) and let us write the master playlist ourselves, with the
CODECS strings read back from the encoded bytes.

In fMP4 the audio is encoded once into its own rendition (``audio/``) that every video
rendition shares (an HLS ``EXT-X-MEDIA`` audio group, a DASH audio adaptation set): CMAF
keeps one track per file, which is what lets one set of segments serve HLS and DASH
(DASH players do not play multiplexed representations), and the audio bytes are stored
once instead of once per rung. MPEG-TS keeps audio muxed into every rendition.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import ffmpeg

from packager.ladder import Rung
from packager.probe import Source, media_url

Format = Literal["fmp4", "ts"]
FORMATS: Final[tuple[Format, ...]] = ("fmp4", "ts")
PRESETS: Final = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
)
AUDIO_RATE: Final = 48000
AUDIO_CHANNELS: Final = 2
AUDIO_DIR: Final = "audio"
PROGRESS_PERIOD_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    segment_seconds: float = 4.0
    format: Format = "fmp4"
    single_file: bool = False
    preset: str = "veryfast"
    #: ``aes-128`` (HLS segment encryption) or ``cenc`` (CENC, DASH); `packager.encrypt`.
    encrypt: str | None = None


@dataclass(frozen=True, slots=True)
class Layout:
    """Where one rendition's files go, relative to the title directory."""

    directory: str
    playlist: str
    init: str | None
    segments: str  # a %05d pattern, or the single media file

    @staticmethod
    def of(rung: Rung, options: EncodeOptions) -> Layout:
        d = rung.name
        ext = "m4s" if options.format == "fmp4" else "ts"
        if options.single_file:
            media = f"{d}/media.mp4" if options.format == "fmp4" else f"{d}/media.ts"
            return Layout(d, f"{d}/index.m3u8", None, media)
        init = f"{d}/init.mp4" if options.format == "fmp4" else None
        return Layout(d, f"{d}/index.m3u8", init, f"{d}/seg_%05d.{ext}")

    @staticmethod
    def audio(options: EncodeOptions) -> Layout:
        """The shared audio rendition of an fMP4 title."""
        d = AUDIO_DIR
        if options.single_file:
            return Layout(d, f"{d}/index.m3u8", None, f"{d}/media.mp4")
        return Layout(d, f"{d}/index.m3u8", f"{d}/init.mp4", f"{d}/seg_%05d.m4s")


def separate_audio(source: Source, options: EncodeOptions) -> bool:
    """Whether the title has its own audio rendition (fMP4 with an audio track)."""
    return source.audio is not None and options.format == "fmp4"


def gop_frames(fps: float, segment_seconds: float) -> int:
    """The longest gap between forced keyframes, in frames: at constant frame rate the
    first frame at or after each boundary is at most ceil(fps * SEG) frames after the
    previous one, so x264 never adds a keyframe of its own inside a segment."""
    return max(1, math.ceil(fps * segment_seconds - 1e-9))


def _seconds(value: float) -> str:
    return f"{value:g}"


def _muxer_options(layout: Layout, options: EncodeOptions, out: Path) -> dict[str, Any]:
    seg = _seconds(options.segment_seconds)
    opts: dict[str, Any] = {
        "f": "hls",
        "hls_time": seg,
        "hls_playlist_type": "vod",
        "hls_list_size": 0,
        "hls_segment_type": "fmp4" if options.format == "fmp4" else "mpegts",
        "hls_flags": "independent_segments" + ("+single_file" if options.single_file else ""),
        "hls_segment_filename": str(out / layout.segments),
        "start_number": 1,
    }
    if layout.init is not None:
        opts["hls_fmp4_init_filename"] = Path(layout.init).name
    return opts


def _audio_options(kbps: int) -> dict[str, Any]:
    return {"c:a": "aac", "b:a": f"{kbps}k", "ac": AUDIO_CHANNELS, "ar": AUDIO_RATE}


def audio_output_options(
    rungs: tuple[Rung, ...], options: EncodeOptions, out: Path
) -> dict[str, Any]:
    """The shared audio rendition: the best rung's audio bitrate, its own HLS muxer."""
    return {
        **_audio_options(max(r.audio_kbps for r in rungs)),
        **_muxer_options(Layout.audio(options), options, out),
    }


def output_options(
    rung: Rung, source: Source, options: EncodeOptions, out: Path, *, shared_audio: bool = False
) -> dict[str, Any]:
    """The per-rendition ffmpeg options: encoder, keyframes, HLS muxer; the rung's own AAC
    encoder unless the title has a `shared_audio` rendition."""
    layout = Layout.of(rung, options)
    seg = _seconds(options.segment_seconds)
    gop = gop_frames(source.video.fps, options.segment_seconds)
    opts: dict[str, Any] = {
        "c:v": "libx264",
        "preset": options.preset,
        "b:v": f"{rung.video_kbps}k",
        "maxrate:v": f"{rung.maxrate_kbps}k",
        "bufsize:v": f"{rung.bufsize_kbps}k",
        "g": gop,
        "keyint_min": gop,
        "sc_threshold": 0,
        "force_key_frames": f"expr:gte(t,n_forced*{seg})",
        **_muxer_options(layout, options, out),
    }
    if source.audio is not None and not shared_audio:
        opts.update(_audio_options(rung.audio_kbps))
    return opts


def build(source: Source, rungs: tuple[Rung, ...], options: EncodeOptions, out: Path) -> Any:
    """The ffmpeg-python graph that encodes every rung of `source` into `out`."""
    shared = separate_audio(source, options)
    audio = None
    if shared:
        audio = (out / Layout.audio(options).playlist, audio_output_options(rungs, options, out))
    return ladder_graph(
        ffmpeg.input(media_url(Path(source.path))),
        source,
        rungs,
        lambda rung: (
            out / Layout.of(rung, options).playlist,
            output_options(rung, source, options, out, shared_audio=shared),
        ),
        audio,
    )


def ladder_graph(
    inp: Any,
    source: Source,
    rungs: tuple[Rung, ...],
    output_for: Callable[[Rung], tuple[Path, dict[str, Any]]],
    audio_output: tuple[Path, dict[str, Any]] | None = None,
) -> Any:
    """Decode `inp` once and encode each rung to the playlist and options `output_for`
    gives; shared by `vcdn package` and `vcdn live`, so both ladders switch alike. With
    `audio_output` the audio is encoded once to that playlist, not muxed into each rung."""
    if not rungs:
        raise ValueError("the ladder has no rungs")
    n = len(rungs)
    video = inp[str(source.video.index)].filter_multi_output("split", n)
    audio = None
    shared = audio_output is not None and source.audio is not None
    if source.audio is not None and not shared:
        audio = inp[str(source.audio.index)].filter_multi_output("asplit", n)
    outputs = []
    for i, rung in enumerate(rungs):
        v = (
            video.stream(i)
            .filter("scale", rung.width, rung.height)
            .filter("setsar", 1)
            .filter("format", "yuv420p")
        )
        streams = [v] if audio is None else [v, audio.stream(i)]
        playlist, opts = output_for(rung)
        outputs.append(ffmpeg.output(*streams, str(playlist), **opts))
    if shared and audio_output is not None and source.audio is not None:
        path, opts = audio_output
        outputs.append(ffmpeg.output(inp[str(source.audio.index)], str(path), **opts))
    return (
        ffmpeg.merge_outputs(*outputs)
        .global_args(
            "-hide_banner", "-nostdin", "-loglevel", "error",
            "-progress", "pipe:1", "-stats_period", _seconds(PROGRESS_PERIOD_S), "-nostats",
        )
        .overwrite_output()
    )


def command(
    source: Source, rungs: tuple[Rung, ...], options: EncodeOptions, out: Path, ffmpeg_cmd: str
) -> list[str]:
    """The argv to run: ``[ffmpeg_cmd, ...]``."""
    return list(build(source, rungs, options, out).compile(cmd=ffmpeg_cmd))


def directories(
    rungs: tuple[Rung, ...], options: EncodeOptions, source: Source | None = None
) -> list[str]:
    """The per-rendition directories ffmpeg expects to exist before it starts."""
    dirs = [Layout.of(rung, options).directory for rung in rungs]
    if source is not None and separate_audio(source, options):
        dirs.append(Layout.audio(options).directory)
    return dirs
