"""Low-latency HLS at the origin: parts as they are written, blocking playlist reload,
delta updates and preload hints (draft-pantos-hls-rfc8216bis §6.2.5).

A low-latency pipeline (``part_seconds`` in its event document) streams each part with a
chunked ``PUT {rendition}/part_{msn}_{i}.m4s`` while ffmpeg is still encoding its later
frames, then PUTs the whole segment as before (`origin.content.live` judges and keeps it).
Parts live in RAM only: a few segments' worth per rendition, gone after a restart (the
players then fall back to segments). A part is readable from its first byte: a player or
edge that asked for the preload-hinted part gets it chunked as the bytes arrive, and a
part that breaks off or fails its check aborts those readers (a short body must never pass
for a whole one).

One pipeline owns the parts of a segment (the first to send its part 0, named by the
``Vcdn-Pipeline`` header): parts of two encoders cannot be mixed inside a segment, since
only part 0 starts with a keyframe. Segments themselves still go to the first good copy.

Playlists of a low-latency event are rendered per request from what is held
(`origin.content.llplaylist`); a request with ``_HLS_msn``/``_HLS_part`` waits for its
part at most three target durations (503 after that).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from origin.content.fmp4 import BoxError, parse_segment
from origin.content.live import LiveTitle, LiveTitles, rendition_names
from origin.content.llplaylist import (
    ERROR_CACHE_CONTROL,
    HOLD_TARGETS,
    LIVE_CACHE_CONTROL,
    PART_CACHE_CONTROL,
    PartInfo,
    View,
    blocking_cache_control,
    judge,
    render,
)
from vcdn.errors import ClientError, Conflict, MediaError, NotFound, PayloadTooLarge
from vcdn.hlsdirectives import BadDirective, parse_directives
from vcdn.httpserve.cors import RESPONSE_HEADERS
from vcdn.httpserve.middleware import error_response
from vcdn.httpserve.send import send_bytes

PART_RE: Final = re.compile(r"^part_(\d{1,15})_(\d{1,4})\.m4s$")
PLAYLIST: Final = "index.m3u8"
PIPELINE_HEADER: Final = "Vcdn-Pipeline"
#: Segments (newest kept first) whose parts stay in RAM.
KEEP_SEGMENTS: Final = 5
#: A part longer than this many part targets is not a part.
PART_SLACK: Final = 1.5
M3U8: Final = "application/vnd.apple.mpegurl"
MP4: Final = "video/mp4"


@dataclass(slots=True)
class Part:
    msn: int
    index: int
    owner: str
    data: bytearray = field(default_factory=bytearray)
    done: bool = False
    failed: bool = False
    duration: float = 0.0
    independent: bool = False
    start: float = 0.0
    grew: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        grew, self.grew = self.grew, asyncio.Event()
        grew.set()


@dataclass(slots=True)
class RenditionParts:
    by_msn: dict[int, list[Part]] = field(default_factory=dict)
    owner: dict[int, str] = field(default_factory=dict)


class LowLatency:
    """The low-latency side of every live title under one origin."""

    def __init__(self, live: LiveTitles, max_bytes: int) -> None:
        self.live = live
        self.max_bytes = max_bytes
        self._parts: dict[tuple[str, str], RenditionParts] = {}
        self._changed: dict[str, asyncio.Event] = {}
        live.on_kept.append(self._kept)

    # --- state ---------------------------------------------------------------------

    def title(self, title: str) -> LiveTitle | None:
        """The running low-latency event `title`, or None."""
        if not self.live.is_live(title):
            return None
        with contextlib.suppress(OSError, ValueError, ClientError):
            state = self.live._load(title)
            if state is not None and not state.ended and state.event.part_seconds > 0:
                return state
        return None

    def _rparts(self, title: str, rendition: str) -> RenditionParts:
        return self._parts.setdefault((title, rendition), RenditionParts())

    def _changed_event(self, title: str) -> asyncio.Event:
        return self._changed.setdefault(title, asyncio.Event())

    def _notify(self, title: str) -> None:
        changed = self._changed.pop(title, None)
        if changed is not None:
            changed.set()

    def _kept(self, title: str, rendition: str) -> None:
        """A segment was kept: forget parts of old segments, wake the waiters."""
        state = self.live._titles.get(title)
        rp = self._parts.get((title, rendition))
        if state is not None and rp is not None:
            newest = max(state.renditions[rendition].kept, default=-1)
            for msn in [m for m in rp.by_msn if m <= newest - KEEP_SEGMENTS]:
                rp.by_msn.pop(msn, None)
                rp.owner.pop(msn, None)
        if state is not None and state.ended:
            for key in [k for k in self._parts if k[0] == title]:
                del self._parts[key]
        self._notify(title)

    def view(self, state: LiveTitle, rendition: str) -> View:
        rp = self._parts.get((state.title, rendition))
        done: dict[int, list[PartInfo]] = {}
        if rp is not None:
            for msn, parts in rp.by_msn.items():
                listed = []
                for p in parts:
                    if not p.done:
                        break
                    listed.append(PartInfo(msn, p.index, p.duration, p.independent, p.start))
                if listed:
                    done[msn] = listed
        ev = state.event
        return View(state.renditions[rendition].kept, done, ev.segment_seconds,
                    ev.part_seconds, ev.window)

    # --- ingest ----------------------------------------------------------------------

    async def receive_part(
        self, request: web.Request, title: str, rendition: str, msn: int, index: int
    ) -> web.Response:
        """A part, read as it arrives and readable meanwhile; 201 once whole and judged."""
        state = self.live._require(title)
        if state.ended:
            raise Conflict(f"The live event '{title}' has ended.")
        if state.event.part_seconds <= 0:
            raise Conflict(f"The live event '{title}' is not low-latency (no part_seconds).")
        rend = self.live._rendition(state, rendition)
        if rend.track is None:
            raise Conflict(f"PUT {rendition}/init.mp4 before its parts.")
        if request.content_length is not None and request.content_length > self.max_bytes:
            raise PayloadTooLarge(f"A part of {request.content_length} bytes is too large.")
        if msn <= max(rend.kept, default=-1):
            raise Conflict(f"Segment {msn} of {rendition} is already kept; its parts are late.")
        owner = request.headers.get(PIPELINE_HEADER, "")[:64]
        rp = self._rparts(title, rendition)
        parts = rp.by_msn.get(msn)
        if parts is None:
            if index != 0:
                raise Conflict(f"Part {index} of segment {msn} before its part 0.")
            parts = rp.by_msn[msn] = []
            rp.owner[msn] = owner
        elif rp.owner.get(msn) != owner:
            await _drain(request)
            return web.Response(status=200, text="another pipeline's parts were kept\n")
        elif index != len(parts) or not parts[-1].done:
            raise Conflict(f"Part {index} of segment {msn} out of order "
                           f"(the origin holds {len(parts)}).")
        part = Part(msn, index, owner)
        parts.append(part)
        self._notify(title)  # a reader waiting on the preload hint starts streaming now
        try:
            async for chunk in request.content.iter_any():
                if len(part.data) + len(chunk) > self.max_bytes:
                    raise PayloadTooLarge(f"A part may hold at most {self.max_bytes} bytes.")
                part.data += chunk
                part.notify()
            if request.content_length is not None and len(part.data) != request.content_length:
                raise ClientError("The part broke off before its announced length.")
            timing = parse_segment(bytes(part.data), rend.track)
            if timing.duration > PART_SLACK * state.event.part_seconds + 0.05:
                raise MediaError(f"Part {index} of segment {msn} lasts {timing.duration:.3f} s, "
                                 f"more than a part ({state.event.part_seconds:g} s).")
            if index == 0 and not timing.starts_with_sync:
                raise MediaError(f"Part 0 of segment {msn} does not start with a keyframe.")
        except BaseException as exc:
            part.failed = True
            with contextlib.suppress(ValueError):
                parts.remove(part)
            if not parts:
                rp.by_msn.pop(msn, None)
                rp.owner.pop(msn, None)
            part.notify()
            self._notify(title)
            if isinstance(exc, BoxError):
                raise MediaError(f"{rendition}/part_{msn}_{index}.m4s is not a usable part: "
                                 f"{exc}.") from None
            raise
        part.duration = timing.duration
        part.start = timing.start
        part.independent = timing.starts_with_sync
        part.done = True
        part.notify()
        self._notify(title)
        return web.Response(status=201, text="kept\n")

    # --- serving ---------------------------------------------------------------------

    async def serve(
        self, request: web.Request, state: LiveTitle, inner: str
    ) -> web.StreamResponse | None:
        """A low-latency playlist or part, or None when the normal path serves `inner`."""
        rendition, _, name = inner.rpartition("/")
        if rendition not in state.renditions:
            return None
        if name == PLAYLIST:
            return await self._playlist(request, state, rendition)
        m = PART_RE.match(name)
        if m is not None:
            return await self._part(request, state, rendition, int(m.group(1)), int(m.group(2)))
        return None

    async def _wait(self, title: str, until: float) -> bool:
        """Until something of `title` changes or the loop time `until`; False on timeout."""
        left = until - asyncio.get_running_loop().time()
        if left <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed_event(title).wait(), left)
            return True
        return False

    async def _playlist(
        self, request: web.Request, state: LiveTitle, rendition: str
    ) -> web.StreamResponse:
        try:
            d = parse_directives(request.query_string)
        except BadDirective as exc:
            return _error(400, "bad_directive", str(exc))
        loop = asyncio.get_running_loop()
        view = self.view(state, rendition)
        until = loop.time() + HOLD_TARGETS * view.target_duration
        while True:
            verdict = judge(view, d)
            if verdict.action == "refuse":
                return _error(400, "too_far_ahead", verdict.reason)
            if verdict.action == "serve":
                break
            if not await self._wait(state.title, until) and loop.time() >= until:
                return _error(503, "not_yet", f"Part {d.part} of segment {d.msn} did not "
                              f"appear within {HOLD_TARGETS} target durations.")
            if state.ended:
                break  # §6.2.5.2: directives are ignored once the playlist has EXT-X-ENDLIST
            view = self.view(state, rendition)
        if state.ended:
            return await _ended(request, state, rendition)
        reports = [
            self.view(state, name).report(f"../{name}/{PLAYLIST}")
            for name in rendition_names(state.event) if name != rendition
        ]
        text = render(view, reports, skip=d.skip is not None).encode()
        cc = blocking_cache_control(view.target_duration) if d.blocking else LIVE_CACHE_CONTROL
        return await send_bytes(
            request, text, etag=_etag(text), last_modified=None, content_type=M3U8,
            cache_control=cc,
        )

    async def _part(
        self, request: web.Request, state: LiveTitle, rendition: str, msn: int, index: int
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        until = loop.time() + HOLD_TARGETS * self.view(state, rendition).target_duration
        while True:
            part = self._find(state.title, rendition, msn, index)
            if part is not None:
                break
            view = self.view(state, rendition)
            # Only the preload-hinted part (or the first of the next segment, which the
            # hint becomes when the open segment ends) is waited for.
            upcoming = {view.next_part(), (view.last_msn + 1, 0)}
            if (msn, index) not in upcoming or state.ended:
                raise NotFound(f"No part {index} of segment {msn} in {rendition}.")
            if not await self._wait(state.title, until) and loop.time() >= until:
                raise NotFound(f"Part {index} of segment {msn} did not appear in time.")
        if part.done:
            body = bytes(part.data)
            return await send_bytes(request, body, etag=_etag(body), last_modified=None,
                                    content_type=MP4, cache_control=PART_CACHE_CONTROL)
        return await _stream(request, part)

    def _find(self, title: str, rendition: str, msn: int, index: int) -> Part | None:
        rp = self._parts.get((title, rendition))
        if rp is None:
            return None
        parts = rp.by_msn.get(msn, [])
        return parts[index] if index < len(parts) and not parts[index].failed else None


async def _stream(request: web.Request, part: Part) -> web.StreamResponse:
    """A part still being written: chunked, each piece as it lands; the connection is
    cut if the part fails, so that no reader mistakes a short part for a whole one."""
    resp = web.StreamResponse(status=200, headers={
        "Content-Type": MP4, "Cache-Control": PART_CACHE_CONTROL, **dict(RESPONSE_HEADERS),
    })
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    if request.method == "HEAD":
        await resp.write_eof()
        return resp
    sent = 0
    while True:
        grew = part.grew
        if len(part.data) > sent:
            chunk = bytes(part.data[sent:])
            sent += len(chunk)
            await resp.write(chunk)
            continue
        if part.failed:
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError("the part failed while it was being read")
        if part.done:
            break
        await grew.wait()
    await resp.write_eof()
    return resp


async def _ended(request: web.Request, state: LiveTitle, rendition: str) -> web.StreamResponse:
    path = state.directory / rendition / PLAYLIST
    body = await asyncio.to_thread(path.read_bytes)
    return await send_bytes(request, body, etag=_etag(body), last_modified=time.time(),
                            content_type=M3U8, cache_control="public, max-age=60")


async def _drain(request: web.Request) -> None:
    async for _ in request.content.iter_any():
        pass


def _etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _error(status: int, code: str, detail: str) -> web.Response:
    resp = error_response(status, code, detail)
    resp.headers["Cache-Control"] = ERROR_CACHE_CONTROL
    for name, value in RESPONSE_HEADERS:
        resp.headers[name] = value
    return resp
