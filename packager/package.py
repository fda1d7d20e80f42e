"""Packaging one title end to end: probe → plan → encode → measure → manifest → publish.

This is the wiring; each step lives in its own module. Everything between creating the
staging directory and the final rename is inside one ``try``: any failure, including an
interrupt, removes the half-built title, so the origin root only ever gains whole titles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packager import dash
from packager import manifest as manifest_mod
from packager.encrypt import TitleKey, cenc_rendition, encrypt_rendition
from packager.graph import (
    AUDIO_CHANNELS,
    AUDIO_RATE,
    EncodeOptions,
    Layout,
    command,
    directories,
    separate_audio,
)
from packager.ladder import DEFAULT_HEIGHTS, Rung, plan
from packager.outputs import AudioReport, RenditionReport, describe, describe_audio
from packager.playlists import AudioRendition, master_playlist
from packager.probe import Source, probe_source
from packager.publish import check_free, discard, new_staging, prepare_root, publish, sweep_stale
from packager.run import Reporter, find_tool, run_ffmpeg
from vcdn.errors import MediaError, VcdnError
from vcdn.schemas import TitleManifest
from vcdn.titles import validate_title

MASTER_NAME = "master.m3u8"


@dataclass(frozen=True, slots=True)
class Request:
    source: Path
    title: str
    origin_root: Path
    heights: tuple[int, ...] = DEFAULT_HEIGHTS
    options: EncodeOptions = field(default_factory=EncodeOptions)
    force: bool = False
    #: Stores an encrypted title's key with the control plane's key service before the
    #: title is published (the key is never written to disk); required with `encrypt`.
    key_sink: KeySink | None = None


@dataclass(frozen=True, slots=True)
class Result:
    path: Path
    manifest: TitleManifest
    source: Source
    rungs: tuple[Rung, ...]
    elapsed: float


ReporterFactory = Callable[[str, float], Reporter]
KeySink = Callable[[str, TitleKey], None]


def package(request: Request, reporter: ReporterFactory) -> Result:
    """Package `request.source` as `request.title` and publish it; VcdnError if we cannot."""
    started = time.monotonic()
    title = validate_title(request.title)
    key = None
    if request.options.encrypt is not None:
        check_encryptable(request.options)
        if request.key_sink is None:
            raise VcdnError(
                "An encrypted title's key lives only in the control database: --encrypt "
                "needs --control (and the packager token)."
            )
        key = TitleKey.new(request.options.encrypt)  # type: ignore[arg-type]
    ffmpeg = find_tool("ffmpeg")
    find_tool("ffprobe")
    source = probe_source(request.source)
    rungs = plan(request.heights, source.video.geometry)
    root = request.origin_root
    prepare_root(root)
    check_free(root, title, request.force)
    sweep_stale(root)
    build_dir = new_staging(root, title)
    log = build_dir.with_name(build_dir.name + ".log")  # beside the title, not in it
    try:
        reports, audio = _encode(
            title, source, rungs, request.options, build_dir, ffmpeg, log, reporter, key
        )
        version = max(r.playlist.version for r in reports)
        group = None
        if audio is not None:
            version = max(version, audio.playlist.version)
            group = AudioRendition("audio", audio.layout.playlist, AUDIO_CHANNELS)
        (build_dir / MASTER_NAME).write_text(
            master_playlist([r.variant for r in reports], version, group)
        )
        # AES-128 encrypts whole segment files, which DASH players cannot read.
        if request.options.format == "fmp4" and request.options.encrypt != "aes-128":
            (build_dir / dash.MPD_NAME).write_text(
                dash_manifest(reports, audio, request.options.segment_seconds,
                              key.kid if key is not None else None)
            )
        doc = manifest_mod.build(
            title,
            duration=max(r.playlist.duration for r in reports),
            segment_seconds=request.options.segment_seconds,
            format=request.options.format,
            single_file=request.options.single_file,
            renditions=[r.rendition for r in reports],
            files=manifest_mod.file_entries(build_dir),
        )
        manifest_mod.write(build_dir, doc)
        if key is not None and request.key_sink is not None:
            request.key_sink(title, key)  # before any player can see the ciphertext
        path = publish(build_dir, root, title, force=request.force)
    except BaseException:
        discard(build_dir)
        raise
    finally:
        log.unlink(missing_ok=True)
    return Result(path, doc, source, rungs, time.monotonic() - started)


def check_encryptable(options: EncodeOptions) -> None:
    """Encryption is for fMP4 segment files: whole-file AES-128 of byte ranges and CENC of
    MPEG-TS are not what players read."""
    if options.encrypt not in ("aes-128", "cenc"):
        raise VcdnError(f"Unknown encryption {options.encrypt!r}; use aes-128 or cenc.")
    if options.format != "fmp4" or options.single_file:
        raise VcdnError(
            f"--encrypt {options.encrypt} needs fMP4 segment files (--format fmp4, "
            "without --single-file)."
        )


def dash_manifest(
    reports: list[RenditionReport], audio: AudioReport | None, segment_seconds: float,
    default_kid: bytes | None = None,
) -> str:
    """The MPD for the renditions just measured: the same files the playlists name."""
    video = [
        dash.Track(
            id=r.rung.name, kind="video", bandwidth=r.video_bandwidth, codecs=r.video_codecs,
            durations=tuple(s.duration for s in r.playlist.segments),
            addressing=dash.addressing(r.layout.directory, r.layout.segments, r.playlist),
            width=r.rung.width, height=r.rung.height, frame_rate=r.variant.frame_rate,
        )
        for r in reports
    ]
    track = None
    if audio is not None:
        track = dash.Track(
            id="audio", kind="audio", bandwidth=audio.bandwidth, codecs=audio.codecs,
            durations=tuple(s.duration for s in audio.playlist.segments),
            addressing=dash.addressing(audio.layout.directory, audio.layout.segments,
                                       audio.playlist),
            sampling_rate=AUDIO_RATE, channels=AUDIO_CHANNELS,
        )
    duration = max(max(r.playlist.duration for r in reports),
                   audio.playlist.duration if audio else 0.0)
    try:
        return dash.mpd(video, track, duration=duration, segment_seconds=segment_seconds,
                        default_kid=default_kid)
    except dash.DashError as exc:
        raise MediaError(f"cannot write the DASH manifest: {exc}") from None


def _encode(
    title: str,
    source: Source,
    rungs: tuple[Rung, ...],
    options: EncodeOptions,
    out: Path,
    ffmpeg: str,
    log: Path,
    reporter: ReporterFactory,
    key: TitleKey | None = None,
) -> tuple[list[RenditionReport], AudioReport | None]:
    for directory in directories(rungs, options, source):
        (out / directory).mkdir()
    argv = command(source, rungs, options, out, ffmpeg)
    progress = reporter(title, source.duration)
    try:
        run_ffmpeg(argv, log=log, on_progress=progress.update)
    finally:
        progress.finish()
    if key is not None:
        playlists = [Layout.of(rung, options).playlist for rung in rungs]
        if separate_audio(source, options):
            playlists.append(Layout.audio(options).playlist)
        encrypt = encrypt_rendition if key.scheme == "aes-128" else cenc_rendition
        try:
            for playlist in playlists:
                encrypt(out, playlist, key)
        except ValueError as exc:  # CencError too: what ffmpeg wrote is not what we expect
            raise MediaError(f"cannot encrypt {playlist}: {exc}") from None
    audio = None
    if separate_audio(source, options):
        audio = describe_audio(out, Layout.audio(options))
    muxed_audio = source.audio is not None and audio is None
    # One ffprobe per rendition; they are independent, so run them side by side.
    with ThreadPoolExecutor(max_workers=len(rungs)) as pool:
        return list(pool.map(
            lambda rung: describe(out, rung, Layout.of(rung, options), source.video.fps,
                                  muxed_audio, audio),
            rungs,
        )), audio
