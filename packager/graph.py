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
PROGRESS_PERIOD_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    segment_seconds: float = 4.0
    format: Format = "fmp4"
    single_file: bool = False
    preset: str = "veryfast"


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


def gop_frames(fps: float, segment_seconds: float) -> int:
    """The longest gap between forced keyframes, in frames: at constant frame rate the
    first frame at or after each boundary is at most ceil(fps * SEG) frames after the
    previous one, so x264 never adds a keyframe of its own inside a segment."""
    return max(1, math.ceil(fps * segment_seconds - 1e-9))


def _seconds(value: float) -> str:
    return f"{value:g}"


def output_options(rung: Rung, source: Source, options: EncodeOptions, out: Path) -> dict[str, Any]:
    """The per-rendition ffmpeg options: encoder, keyframes, HLS muxer."""
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
    if source.audio is not None:
        opts.update({
            "c:a": "aac",
            "b:a": f"{rung.audio_kbps}k",
            "ac": AUDIO_CHANNELS,
            "ar": AUDIO_RATE,
        })
    return opts


def build(source: Source, rungs: tuple[Rung, ...], options: EncodeOptions, out: Path) -> Any:
    """The ffmpeg-python graph that encodes every rung of `source` into `out`."""
    return ladder_graph(
        ffmpeg.input(media_url(Path(source.path))),
        source,
        rungs,
        lambda rung: (
            out / Layout.of(rung, options).playlist,
            output_options(rung, source, options, out),
        ),
    )


def ladder_graph(
    inp: Any,
    source: Source,
    rungs: tuple[Rung, ...],
    output_for: Callable[[Rung], tuple[Path, dict[str, Any]]],
) -> Any:
    """Decode `inp` once and encode each rung to the playlist and options `output_for`
    gives; shared by `vcdn package` and `vcdn live`, so both ladders switch alike."""
    if not rungs:
        raise ValueError("the ladder has no rungs")
    n = len(rungs)
    video = inp[str(source.video.index)].filter_multi_output("split", n)
    audio = None
    if source.audio is not None:
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


def directories(rungs: tuple[Rung, ...], options: EncodeOptions) -> list[str]:
    """The per-rendition directories ffmpeg expects to exist before it starts."""
    return [Layout.of(rung, options).directory for rung in rungs]
