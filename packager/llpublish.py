"""`vcdn live --low-latency`: ffmpeg's fragmented MP4 cut into parts and streamed to the
origin as it is encoded.

Each rendition gets its own ffmpeg output, a fragmented MP4 written into a pipe with one
fragment per frame (``frag_every_frame``, ``flush_packets``: a frame reaches us the moment
x264 emits it; ``tune=zerolatency``: x264 emits it without lookahead or B-frames). One
thread per rendition reads the pipe, cuts it with `packager.parts` and publishes:

* the init segment into the spool (``{rendition}/init.mp4``), where the uploader reads
  the codecs from it and announces the event, as in normal live;
* each part with a chunked ``PUT {rendition}/part_{msn}_{i}.m4s`` that starts with the
  part's first frame and ends with its last, so players waiting on the preload hint get
  every frame as it is encoded;
* each segment, the concatenation of its parts, with ``PUT {rendition}/seg_{msn}.m4s``
  right after its last part (the origin judges and keeps segments as in normal live).

A segment that began before the event was announced is not published (its parts could
not be): publishing starts with the next one.

An event with sound has one more output, the audio rendition (``audio/``, as in normal
live): AAC in a fragmented MP4 of one fragment per AAC frame, cut by
`packager.parts.AudioCutter` into parts of whole frames and segments on the same slot
boundaries, and published the same way. At the end of the input its last segment is held
back unless a video rendition published that number too (the audio muxer's last
milliseconds are a segment of their own).
"""

from __future__ import annotations

import contextlib
import http.client
import math
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from packager.graph import (
    AUDIO_DIR,
    EncodeOptions,
    audio_output_options,
    ladder_graph,
    output_options,
)
from packager.ingest_client import IngestClient
from packager.ladder import Rung
from packager.livegraph import LiveSource, slot_time
from packager.parts import (
    AudioCutter,
    BoxError,
    BoxSplitter,
    Cutter,
    PartClosed,
    PartData,
    PartOpened,
    SegmentClosed,
    Track,
    parse_fragment,
    parse_init,
    shift_fragment,
)
from packager.probe import Source
from vcdn.errors import ClientError, UpstreamError

MP4: Final = "video/mp4"
READ_BYTES: Final = 256 * 1024
PIPELINE_HEADER: Final = "Vcdn-Pipeline"
_HLS_KEYS: Final = (
    "f", "hls_time", "hls_playlist_type", "hls_list_size", "hls_segment_type", "hls_flags",
    "hls_segment_filename", "start_number", "hls_fmp4_init_filename",
)


def part_target(part_seconds: float, fps: float) -> float:
    """The longest part the cutter makes (whole frames: 10 at 30 fps for 0.333 s), rounded
    up to the millisecond: the playlist's PART-TARGET, which no part may exceed."""
    frames = max(1, math.ceil((part_seconds - 0.5 / fps) * fps - 1e-9))
    return math.ceil(frames / fps * 1000) / 1000


#: A fragmented MP4 written into a pipe, one fragment per frame, flushed at once.
_FRAGMENTED: Final = {
    "f": "mp4",
    "movflags": "+empty_moov+default_base_moof+frag_every_frame",
    "flush_packets": 1,
}


def ll_output_options(
    rung: Rung, source: Source, options: EncodeOptions, *, shared_audio: bool = False
) -> dict[str, Any]:
    """`vcdn package`'s encoder options with a fragmented MP4 muxer writing pipe `fd`;
    the rung's own AAC encoder unless the event has a `shared_audio` rendition."""
    opts = output_options(rung, source, options, Path("."), shared_audio=shared_audio)
    for key in _HLS_KEYS:
        opts.pop(key, None)
    opts.update({"tune": "zerolatency", **_FRAGMENTED})
    return opts


def ll_audio_options(rungs: tuple[Rung, ...], options: EncodeOptions) -> dict[str, Any]:
    """The audio rendition's AAC encoder (`packager.graph.audio_output_options`) with the
    same fragmented MP4 muxer."""
    opts = audio_output_options(rungs, options, Path("."))
    for key in _HLS_KEYS:
        opts.pop(key, None)
    opts.update(_FRAGMENTED)
    return opts


def ll_command(
    live: LiveSource, source: Source, rungs: tuple[Rung, ...], options: EncodeOptions,
    fds: list[int], ffmpeg_cmd: str, audio_fd: int | None = None,
) -> list[str]:
    """One output per rung into `fds`; with `audio_fd` (an event with sound) the audio
    is its own output into that pipe, not muxed into each rung."""
    import ffmpeg

    by_name = {r.name: fd for r, fd in zip(rungs, fds, strict=True)}
    shared = audio_fd is not None and source.audio is not None
    audio = None
    if shared and audio_fd is not None:
        audio = (Path(f"pipe:{audio_fd}"), ll_audio_options(rungs, options))
    graph = ladder_graph(
        ffmpeg.input(live.target, **live.input_kwargs()),
        source,
        rungs,
        lambda rung: (Path(f"pipe:{by_name[rung.name]}"),
                      ll_output_options(rung, source, options, shared_audio=shared)),
        audio,
    )
    return list(graph.compile(cmd=ffmpeg_cmd))


class PartPut:
    """One chunked PUT of a part, streamed as its frames come."""

    def __init__(self, conn: http.client.HTTPConnection, path: str, token: str, owner: str):
        self.conn = conn
        conn.putrequest("PUT", path, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Type", MP4)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader(PIPELINE_HEADER, owner)
        conn.endheaders()

    def send(self, data: bytes) -> None:
        if data:
            self.conn.send(b"%x\r\n" % len(data) + data + b"\r\n")

    def finish(self) -> int:
        self.conn.send(b"0\r\n\r\n")
        resp = self.conn.getresponse()
        resp.read()
        if resp.will_close:
            self.conn.close()
        return resp.status


@dataclass(slots=True)
class RenditionStream:
    """Reads one rendition's pipe and publishes its init, parts and segments: a video
    rung, or the audio rendition (`rung` None)."""

    rung: Rung | None
    fd: int
    spool: Path
    origin: str
    title: str
    token: str
    segment_seconds: float
    part_seconds: float
    fps: float
    slot: int
    announced: threading.Event
    on_segment: Callable[[str, int], None]
    owner: str = field(default_factory=lambda: secrets.token_hex(8))
    parts_sent: int = 0
    parts_failed: int = 0
    error: str = ""
    _client: IngestClient | None = None
    _put: PartPut | None = None
    _segment: bytearray = field(default_factory=bytearray)
    _publishing: bool = False
    _thread: threading.Thread | None = None
    #: The newest segment this stream published.
    last_msn: int = -1
    #: The audio stream's video streams: its last segment must have a video one.
    peers: list[RenditionStream] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.rung.name if self.rung is not None else AUDIO_DIR

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"ll-{self.name}",
                                        daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        self._client = IngestClient(self.origin, self.title, self.token)
        try:
            self._read()
        except (BoxError, OSError) as exc:
            self.error = f"{self.name}: {exc}"
        finally:
            self._abort_part()
            self._client.close()
            with contextlib.suppress(OSError):
                os.close(self.fd)

    def _read(self) -> None:
        splitter = BoxSplitter()
        head: list[bytes] = []
        tracks: dict[int, Track] | None = None
        cutter: Cutter | AudioCutter | None = None
        offsets: dict[int, int] = {}
        ticks: dict[int, int] = {}
        moof = b""
        while chunk := os.read(self.fd, READ_BYTES):
            for kind, data in splitter.feed(chunk):
                if tracks is None:
                    head.append(data)
                    if kind == b"moov":
                        init = b"".join(head)
                        tracks = parse_init(init)
                        self._write_init(init)
                        start = slot_time(self.slot, self.segment_seconds)
                        offsets = {t.track_id: round(start * t.timescale) for t in tracks.values()}
                        ticks = {t.track_id: round(t.timescale / self.fps)
                                 for t in tracks.values() if t.kind == "vide"}
                        if self.rung is None:
                            cutter = AudioCutter(tracks, self.segment_seconds, self.part_seconds)
                        else:
                            cutter = Cutter(tracks, self.segment_seconds, self.part_seconds,
                                            self.fps)
                    continue
                if kind == b"moof":
                    moof = data
                elif kind == b"mdat" and moof and cutter is not None:
                    frag = shift_fragment(parse_fragment(moof + data, tracks), offsets, ticks)
                    moof = b""
                    for ev in cutter.feed(frag):
                        self._handle(ev)
        if cutter is not None:
            for ev in cutter.finish():
                if isinstance(ev, SegmentClosed) and not self._last_wanted(ev.msn):
                    continue
                self._handle(ev)

    def _last_wanted(self, msn: int) -> bool:
        """Whether the input's last segment goes out: always for video; for the audio
        only if a video rendition published that number (the audio muxer's last few
        milliseconds past the video are a segment no video segment will join)."""
        if not self.peers:
            return True
        for peer in self.peers:
            peer.join(10.0)  # ffmpeg has closed every pipe: they are finishing too
        return msn <= max(p.last_msn for p in self.peers)

    def _write_init(self, init: bytes) -> None:
        path = self.spool / self.name / "init.mp4"
        tmp = path.with_name(".init.mp4.tmp")
        tmp.write_bytes(init)
        os.replace(tmp, path)

    # --- publishing ------------------------------------------------------------------

    def _handle(self, ev: PartOpened | PartData | PartClosed | SegmentClosed) -> None:
        if isinstance(ev, PartOpened):
            if ev.index == 0:
                self._publishing = self.announced.is_set()
                self._segment = bytearray()
            if not self._publishing:
                return
            self._segment += ev.data
            self._open_part(ev.msn, ev.index)
            self._send(ev.data)
        elif isinstance(ev, PartData):
            if self._publishing:
                self._segment += ev.data
                self._send(ev.data)
        elif isinstance(ev, PartClosed):
            if self._publishing:
                self._close_part()
        elif self._publishing:
            self._put_segment(ev.msn)

    def _connection(self) -> http.client.HTTPConnection:
        assert self._client is not None
        return self._client._connection()

    def _open_part(self, msn: int, index: int) -> None:
        assert self._client is not None
        path = self._client.base + f"{self.name}/part_{msn}_{index}.m4s"
        try:
            self._put = PartPut(self._connection(), path, self.token, self.owner)
        except (OSError, http.client.HTTPException):
            self._client.close()
            self._put = None
            self.parts_failed += 1

    def _send(self, data: bytes) -> None:
        if self._put is None:
            return
        try:
            self._put.send(data)
        except (OSError, http.client.HTTPException):
            self._abort_part()

    def _close_part(self) -> None:
        if self._put is None:
            return
        try:
            status = self._put.finish()
        except (OSError, http.client.HTTPException):
            self._abort_part()
            return
        self._put = None
        if status in (200, 201):
            self.parts_sent += 1
        else:
            self.parts_failed += 1

    def _abort_part(self) -> None:
        if self._put is not None:
            self.parts_failed += 1
            self._put = None
            if self._client is not None:
                self._client.close()

    def _put_segment(self, msn: int) -> None:
        assert self._client is not None
        body = bytes(self._segment)
        self._segment = bytearray()
        with contextlib.suppress(ClientError, UpstreamError):
            self._client.put(f"{self.name}/seg_{msn}.m4s", body, MP4)
        self.last_msn = max(self.last_msn, msn)
        self.on_segment(self.name, msn)


@dataclass(slots=True)
class LowLatencyOutputs:
    """The pipes, the ffmpeg command and the reader threads of a low-latency event."""

    argv: list[str]
    write_fds: tuple[int, ...]
    streams: list[RenditionStream]
    announced: threading.Event

    @staticmethod
    def create(
        live: LiveSource, source: Source, rungs: tuple[Rung, ...], options: EncodeOptions,
        spool: Path, slot: int, ffmpeg_cmd: str, *, origin: str, title: str, token: str,
        part_seconds: float, on_segment: Callable[[str, int], None],
    ) -> LowLatencyOutputs:
        members: list[Rung | None] = [*rungs, *([None] if source.audio is not None else [])]
        pipes = [os.pipe() for _ in members]
        announced = threading.Event()
        owner = secrets.token_hex(8)
        streams = [
            RenditionStream(
                rung, r, spool, origin, title, token, options.segment_seconds, part_seconds,
                source.video.fps, slot, announced, on_segment, owner,
            )
            for rung, (r, _w) in zip(members, pipes, strict=True)
        ]
        for stream in streams:
            if stream.rung is None:
                stream.peers = [s for s in streams if s.rung is not None]
        writers = [w for _r, w in pipes]
        audio_fd = writers[len(rungs)] if source.audio is not None else None
        argv = ll_command(live, source, rungs, options, writers[: len(rungs)], ffmpeg_cmd,
                          audio_fd)
        return LowLatencyOutputs(argv, tuple(writers), streams, announced)

    def start(self) -> None:
        for s in self.streams:
            s.start()

    def join(self, timeout: float = 10.0) -> None:
        for s in self.streams:
            s.join(timeout)

    def close(self) -> None:
        for fd in self.write_fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def errors(self) -> list[str]:
        return [s.error for s in self.streams if s.error]
