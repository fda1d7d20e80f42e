"""One live pipeline: probe → plan → wait for a slot boundary → encode → publish as it comes.

ffmpeg writes a short rolling spool (a private temporary directory); the uploader
(`packager.liveupload`) PUTs each new file to the origin. When the input ends the
pipeline sends the event document with ``ended`` and the origin turns the title into VOD
(``EXT-X-ENDLIST``, ``manifest.json``); with a control URL the pipeline then registers that
manifest like `vcdn package` does. An interrupt stops ffmpeg and leaves the event live:
another pipeline may still be publishing it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

import ffmpeg as ffmpeg_python

from packager.graph import EncodeOptions
from packager.ingest_client import IngestClient
from packager.ladder import plan
from packager.livegraph import (
    LiveSource,
    first_slot,
    live_command,
    slot_time,
    spool_directories,
)
from packager.liveupload import Uploader
from packager.llpublish import LowLatencyOutputs, part_target
from packager.probe import FFPROBE, Source, parse_source
from packager.progress import Progress, ProgressParser
from packager.run import _die_with_parent, _stop, find_tool, last_words
from vcdn.errors import MediaError, VcdnError
from vcdn.schemas import TitleManifest, decode

POLL_S: Final = 0.05
PROBE_TIMEOUT_S: Final = 20.0


@dataclass(frozen=True, slots=True)
class LiveRequest:
    source: LiveSource
    title: str
    origin: str
    token: str
    heights: tuple[int, ...]
    segment_seconds: float = 2.0
    window: float = 60.0
    preset: str = "veryfast"
    #: Low-latency HLS parts (`packager.llpublish`); 0 publishes segments only.
    part_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class LiveResult:
    title: str
    first_msn: int
    edge_msn: int
    segments: int
    manifest: TitleManifest | None  # set when the input ended and the title became VOD


def probe_live(live: LiveSource) -> Source:
    """What the input carries; live sources have no duration."""
    find_tool("ffprobe")
    try:
        data: dict[str, Any] = ffmpeg_python.probe(
            live.target, cmd=FFPROBE, v="error", rw_timeout=int(PROBE_TIMEOUT_S * 1e6),
            **live.input_kwargs(pace=False),
        )
    except ffmpeg_python.Error as exc:
        lines = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else "no details from ffprobe"
        raise MediaError(f"Live source '{live.spec}' cannot be read: {reason}.") from None
    return parse_source(data, live.spec, live=True)


def running_entry(req: LiveRequest, up: Uploader) -> TitleManifest:
    """The catalog entry of a running event: renditions known, files not (they change
    every segment, and appliances pull them through rather than fill them)."""
    return TitleManifest(
        title=req.title, duration=0.0, segment_seconds=req.segment_seconds, format="fmp4",
        single_file=False, renditions=up.renditions(), files=[], live=True,
    )


def progress_line(title: str, up: Uploader, p: Progress | None, started: float, seg: float) -> str:
    """``live t1: edge #N at HH:MM:SS, drift +0.3 s, dropped 0 frames, 12 segments``."""
    edge = up.edge_msn
    at = time.strftime("%H:%M:%S", time.gmtime(slot_time(edge, seg))) if edge >= 0 else "--"
    drift = (time.time() - started) - p.seconds if p is not None else 0.0
    dropped = p.dropped if p is not None else 0
    return (
        f"live {title}: edge #{edge if edge >= 0 else '-'} at {at}Z, drift {drift:+.1f} s, "
        f"dropped {dropped} frames, {up.sent} segments sent"
    )


def run_live(
    req: LiveRequest, err: TextIO | None, interval: float,
    on_announced: Callable[[TitleManifest], None] | None = None,
) -> LiveResult:
    """Run the pipeline until the input ends; VcdnError if it cannot run. `on_announced`
    gets the running event's catalog entry (``live=True``, no files yet) once the origin
    has the event, e.g. to register it so that steering hands out playback URLs."""
    ffmpeg = find_tool("ffmpeg")
    source = probe_live(req.source)
    rungs = plan(req.heights, source.video.geometry)
    options = EncodeOptions(segment_seconds=req.segment_seconds, preset=req.preset)
    client = IngestClient(req.origin, req.title, req.token)
    spool = Path(tempfile.mkdtemp(prefix=f"vcdn-live-{req.title}."))
    try:
        for name in spool_directories(rungs, source):
            (spool / name).mkdir()
        slot = first_slot(time.time(), req.segment_seconds)
        argv = live_command(req.source, source, rungs, options, spool, slot, ffmpeg)
        up = Uploader(client, spool, rungs, source.video.fps, source.audio is not None,
                      req.segment_seconds, req.window)
        ll = None
        if req.part_seconds > 0:
            ll = LowLatencyOutputs.create(
                req.source, source, rungs, options, spool, slot, ffmpeg, origin=req.origin,
                title=req.title, token=req.token, part_seconds=req.part_seconds,
                on_segment=up.segment_sent,
            )
            argv, up.part_seconds = ll.argv, part_target(req.part_seconds, source.video.fps)
        start = slot_time(slot, req.segment_seconds)
        time.sleep(max(0.0, start - time.time()))
        code = _run(argv, spool / "ffmpeg.log", up, req, err, interval, start, on_announced, ll)
        up.step()
        if ll is not None and ll.errors:
            raise MediaError(f"cutting ffmpeg's output failed: {ll.errors[0]}")
        if code != 0:
            words = last_words(spool / "ffmpeg.log")
            raise MediaError(f"ffmpeg failed (exit status {code}): {words}")
        client.put("live.json", up.event(ended=True), "application/json")
        manifest = decode(TitleManifest, json.loads(client.get("manifest.json")))
        return LiveResult(req.title, slot, up.edge_msn, up.sent, manifest)
    finally:
        client.close()
        shutil.rmtree(spool, ignore_errors=True)


def _run(
    argv: list[str], log: Path, up: Uploader, req: LiveRequest, err: TextIO | None,
    interval: float, started: float, on_announced: Callable[[TitleManifest], None] | None,
    ll: LowLatencyOutputs | None = None,
) -> int:
    latest: list[Progress] = []
    parser = ProgressParser()
    with open(log, "wb") as log_fh:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_fh, text=True,
            preexec_fn=_die_with_parent, pass_fds=ll.write_fds if ll is not None else (),
        )
        if ll is not None:
            ll.close()  # the readers see the end of each pipe when ffmpeg closes its copy
            ll.start()

        def read_progress() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                p = parser.feed(line)
                if p is not None:
                    latest[:] = [p]

        reader = threading.Thread(target=read_progress, daemon=True)
        reader.start()
        last_report = 0.0
        last_error = ""
        try:
            while proc.poll() is None:
                try:
                    up.step()
                    if ll is not None and up.announced:
                        ll.announced.set()
                    if on_announced is not None and up.announced:
                        on_announced(running_entry(req, up))
                        on_announced = None
                except VcdnError as exc:
                    # The origin may come back: keep encoding, say so once per new message.
                    if err is not None and str(exc) != last_error:
                        print(f"vcdn live: {exc}", file=err, flush=True)
                    last_error = str(exc)
                else:
                    last_error = ""
                now = time.monotonic()
                if err is not None and interval > 0 and now - last_report >= interval:
                    last_report = now
                    p = latest[0] if latest else None
                    print(progress_line(req.title, up, p, started, req.segment_seconds),
                          file=err, flush=True)
                time.sleep(POLL_S)
        except BaseException:
            _stop(proc)
            raise
        reader.join(timeout=5)
        if ll is not None:
            ll.join()
    return proc.returncode
