"""The ffmpeg command for a live event, pure: a source spec and a ladder in, a graph out.

The ladder, scaling and keyframe rules are `vcdn package`'s (`packager.graph`); what
differs is the timeline. Every pipeline on the same event numbers segments from a
shared epoch: the Unix epoch cut into segment-length slots. The packager starts ffmpeg at
a slot boundary, gives the first segment that slot's number (``start_number``) and shifts
every timestamp by the boundary's wall-clock time (``output_ts_offset``, written into
``tfdt`` as is by ``movflags=+frag_discont`` instead of hidden in an edit list). So in
every pipeline media sequence number N starts at N x SEG seconds after the epoch, its
decode time is that instant, and a segment from one pipeline follows one from the other
without a jump: the origin can interleave them.

The audio is encoded once into its own rendition (``audio/``), as `vcdn package` does for
fMP4 (`packager.graph`): one track per file is what DASH players play, and the audio
muxer cuts on the same slot boundaries from the same start, so audio segment N is the
same stretch of the event as video segment N (give or take an AAC frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import ffmpeg

from packager.graph import (
    AUDIO_DIR,
    EncodeOptions,
    audio_output_options,
    ladder_graph,
    output_options,
)
from packager.ladder import Rung
from packager.probe import Source, media_url

#: Protocols ffmpeg reads live; anything else with a scheme is refused, a bare name is a file.
LIVE_SCHEMES: Final = frozenset(
    {"srt", "rtmp", "rtmps", "udp", "rtp", "tcp", "http", "https", "rtsp"}
)
LAVFI_PREFIX: Final = "lavfi:"
#: Spool playlists keep a few segments: the uploader reads them within a second.
SPOOL_SEGMENTS: Final = 6


@dataclass(frozen=True, slots=True)
class LiveSource:
    """Where ffmpeg reads the event: `target` with `options` (``-f lavfi``, ``-re``)."""

    spec: str
    target: str
    options: tuple[tuple[str, str | None], ...]

    def input_kwargs(self, *, pace: bool = True) -> dict[str, str | None]:
        return {k: v for k, v in self.options if pace or k != "re"}


def parse_source_spec(spec: str) -> LiveSource:
    """``lavfi:GRAPH`` (a filter graph, paced), ``scheme://...`` (a live URL, read as it
    comes) or a file name (paced at real time with ``-re``, for tests and rehearsals);
    ValueError with a sentence otherwise."""
    if not spec.strip():
        raise ValueError("the live source is empty")
    if spec.startswith(LAVFI_PREFIX):
        graph = spec[len(LAVFI_PREFIX) :]
        if not graph:
            raise ValueError(
                "lavfi: needs a filter graph, e.g. lavfi:testsrc2=size=640x360:rate=30"
            )
        return LiveSource(spec, graph, (("f", "lavfi"), ("re", None)))
    scheme = urlsplit(spec).scheme.lower()
    if "://" in spec:
        if scheme not in LIVE_SCHEMES:
            raise ValueError(
                f"{scheme!r} is not a live protocol; use one of {', '.join(sorted(LIVE_SCHEMES))}"
            )
        return LiveSource(spec, spec, ())
    return LiveSource(spec, media_url(Path(spec)), (("re", None),))


def first_slot(now: float, segment_seconds: float) -> int:
    """The next slot boundary at least a tenth of a segment away (time to start ffmpeg)."""
    return math.ceil((now + segment_seconds / 10) / segment_seconds)


def slot_time(slot: int, segment_seconds: float) -> float:
    """Wall-clock (Unix) time at which slot `slot` starts."""
    return slot * segment_seconds


def _live_muxer(
    opts: dict[str, Any], directory: str, options: EncodeOptions, spool: Path, slot: int
) -> dict[str, Any]:
    """`vcdn package`'s HLS muxer options made live: a short rolling spool playlist that
    names segments by media sequence number, timestamps on the shared epoch."""
    opts.pop("hls_playlist_type")
    opts.update({
        "hls_list_size": SPOOL_SEGMENTS,
        # temp_file: ffmpeg renames a segment into place only when it is whole.
        "hls_flags": "independent_segments+delete_segments+temp_file",
        "hls_delete_threshold": 2,
        "hls_segment_filename": str(spool / directory / "seg_%d.m4s"),
        "hls_fmp4_init_filename": "init.mp4",
        "hls_segment_options": "movflags=+frag_discont",
        "start_number": slot,
        "output_ts_offset": f"{slot_time(slot, options.segment_seconds):.6f}",
    })
    return opts


def live_output_options(
    rung: Rung, source: Source, options: EncodeOptions, spool: Path, slot: int,
    *, shared_audio: bool = False,
) -> dict[str, Any]:
    """`vcdn package`'s per-rung options, made live (`_live_muxer`); the rung's own AAC
    encoder unless the event has a `shared_audio` rendition."""
    opts = output_options(rung, source, options, spool, shared_audio=shared_audio)
    return _live_muxer(opts, rung.name, options, spool, slot)


def live_audio_options(
    rungs: tuple[Rung, ...], options: EncodeOptions, spool: Path, slot: int
) -> dict[str, Any]:
    """The shared audio rendition's encoder and muxer, made live like a rung's."""
    return _live_muxer(audio_output_options(rungs, options, spool), AUDIO_DIR, options,
                       spool, slot)


def spool_directories(rungs: tuple[Rung, ...], source: Source) -> list[str]:
    """The spool directories ffmpeg writes into: one per rung, and ``audio/``."""
    return [r.name for r in rungs] + ([AUDIO_DIR] if source.audio is not None else [])


def build_live(
    live: LiveSource, source: Source, rungs: tuple[Rung, ...], options: EncodeOptions,
    spool: Path, slot: int,
) -> Any:
    inp = ffmpeg.input(live.target, **live.input_kwargs())
    shared = source.audio is not None
    audio = None
    if shared:
        audio = (spool / AUDIO_DIR / "index.m3u8",
                 live_audio_options(rungs, options, spool, slot))
    return ladder_graph(
        inp,
        source,
        rungs,
        lambda rung: (
            spool / rung.name / "index.m3u8",
            live_output_options(rung, source, options, spool, slot, shared_audio=shared),
        ),
        audio,
    )


def live_command(
    live: LiveSource, source: Source, rungs: tuple[Rung, ...], options: EncodeOptions,
    spool: Path, slot: int, ffmpeg_cmd: str,
) -> list[str]:
    return list(build_live(live, source, rungs, options, spool, slot).compile(cmd=ffmpeg_cmd))
