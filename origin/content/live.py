"""Live titles on disk: what the origin kept, and the playlists it writes from that.

Every upload has been written to a temporary file by the ingest handler; here it is
judged and, if kept, linked into place with ``link(2)``, which fails if the name exists:
the first good copy wins even against a concurrent writer, and a name never points at a
partial file. After each kept segment the rendition's playlist is rewritten (temporary
file + rename), so readers see the old playlist or the new one.

The state is rebuilt from the files after a restart (each segment re-judged), so the
origin needs no database of its own for live.

An event's audio rendition (the event document's ``audio``) is kept like a video one, by
the same rules on the same media sequence numbers; its init segment must hold a sound
track, a video rendition's a video track.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from origin.content.fmp4 import (
    BoxError,
    Track,
    audio_track,
    parse_init,
    parse_segment,
    video_track,
)
from origin.content.livempd import MPD_NAME, live_mpd
from origin.content.livestate import Kept, expired, judge, media_playlist
from vcdn.checksums import sha256_file
from vcdn.errors import ClientError, Conflict, MediaError
from vcdn.logs import event
from vcdn.schemas import FileEntry, LiveEvent, TitleManifest, decode, encode


def rendition_names(doc: LiveEvent) -> list[str]:
    """Every rendition directory of an event: the video renditions, then the audio."""
    return [r.name for r in doc.renditions] + ([doc.audio.name] if doc.audio else [])


def _track(rend: Rendition, init: bytes) -> Track:
    tracks = parse_init(init)
    return audio_track(tracks) if rend.audio else video_track(tracks)

log = logging.getLogger("vcdn.origin")
EVENT_NAME: Final = "live.json"
MANIFEST_NAME: Final = "manifest.json"
INGEST_DIR: Final = ".ingest"
SEGMENT_RE: Final = re.compile(r"^seg_(\d{1,15})\.m4s$")
RENDITION_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
LIVE_RECHECK_S: Final = 1.0
#: How long a request for the next segment may wait for it, in segment durations.
WAIT_SEGMENTS: Final = 1.5
#: A cache's copy of a live playlist goes stale this long before the next segment is
#: due (at most half a segment), so requests from then on wait for the new version.
HOLD_LEAD_S: Final = 1.0
#: How long, in segments, a cache may answer with its last playlist when the origin fails.
STALE_IF_ERROR_SEGMENTS: Final = 5
#: A revalidation waits for the next version until this many segments after it was due.
VERSION_SLACK: Final = 0.5


class NotReady(Conflict):
    """The event document and the rendition's init segment must be uploaded first."""


@dataclass(slots=True)
class Rendition:
    name: str
    track: Track | None = None
    audio: bool = False  # the event's audio rendition: its track is the sound
    kept: dict[int, Kept] = field(default_factory=dict)
    kept_at: float = 0.0  # wall-clock time the newest segment was kept


@dataclass(slots=True)
class LiveTitle:
    title: str
    directory: Path
    event: LiveEvent
    renditions: dict[str, Rendition]

    @property
    def ended(self) -> bool:
        return self.event.ended


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _link_first(tmp: Path, dest: Path) -> bool:
    """Move `tmp` to `dest` unless `dest` exists; True if ours is now there."""
    try:
        os.chmod(tmp, 0o644)
        os.link(tmp, dest)
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


class LiveTitles:
    """Every live title under a content root, loaded on first use."""

    def __init__(self, root: Path, grace: float) -> None:
        self.root = root
        self.grace = grace
        self._titles: dict[str, LiveTitle] = {}
        self._live_cache: dict[str, tuple[float, bool]] = {}
        self._kept_events: dict[tuple[str, str], asyncio.Event] = {}
        #: Called with (title, rendition) after each kept segment (low-latency waiters).
        self.on_kept: list[Callable[[str, str], None]] = []

    # --- reading -----------------------------------------------------------------

    def is_live(self, title: str) -> bool:
        """Whether `title` is a live event still running (short Cache-Control, no RAM
        caching of its playlists)."""
        loaded = self._titles.get(title)
        if loaded is not None:
            return not loaded.ended
        now = time.monotonic()
        cached = self._live_cache.get(title)
        if cached is not None and now - cached[0] < LIVE_RECHECK_S:
            return cached[1]
        live = False
        path = self.root / title / EVENT_NAME
        if path.is_file():
            try:
                live = not decode(LiveEvent, json.loads(path.read_bytes())).ended
            except (OSError, ValueError, ClientError, TypeError):
                live = False
        self._live_cache[title] = (now, live)
        return live

    async def wait_for_segment(self, title: str, inner: str) -> bool:
        """A request for the segment after the newest kept one (a player or edge a moment
        early) waits up to `WAIT_SEGMENTS` segment durations for it instead of getting a
        404; True once it is kept. Segments further ahead or behind are not waited for."""
        state = self._titles.get(title)
        rendition, _, name = inner.rpartition("/")
        m = SEGMENT_RE.match(name)
        if state is None or state.ended or m is None or rendition not in state.renditions:
            return False
        msn = int(m.group(1))
        rend = state.renditions[rendition]
        newest = max(rend.kept, default=None)
        if newest is None or not newest < msn <= newest + 1:
            return msn in rend.kept
        await self._wait_kept(state, rendition, msn, WAIT_SEGMENTS * state.event.segment_seconds)
        return msn in rend.kept

    async def wait_for_version(self, title: str, inner: str) -> bool:
        """A cache revalidating the newest version of a rendition's playlist (its ETag
        matches) waits for the next version, which is due with the next segment, instead
        of getting a 304 now and asking again: so an edge holds each version from the
        moment it is written, still with one request per version. Bounded: no later
        than half a segment after the next one was due, `WAIT_SEGMENTS` segments at most,
        and not at all once the pipelines are that late. True if a new version came."""
        state = self._titles.get(title)
        rendition, _, name = inner.rpartition("/")
        if state is None or state.ended or name != "index.m3u8":
            return False
        rend = state.renditions.get(rendition)
        if rend is None or not rend.kept:
            return False
        seg = state.event.segment_seconds
        left = rend.kept_at + seg * (1 + VERSION_SLACK) - time.time()
        if left <= 0:
            return False
        newest = max(rend.kept)
        await self._wait_kept(state, rendition, newest + 1, min(left, WAIT_SEGMENTS * seg))
        return max(rend.kept) > newest

    async def _wait_kept(self, state: LiveTitle, rendition: str, msn: int, within: float) -> None:
        """Until segment `msn` of `rendition` is kept, the event ends or `within` passes."""
        rend = state.renditions[rendition]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while msn not in rend.kept and not state.ended:
            left = deadline - loop.time()
            if left <= 0:
                return
            kept = self._kept_events.setdefault((state.title, rendition), asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kept.wait(), left)

    def _announce_kept(self, title: str, rendition: str) -> None:
        kept = self._kept_events.pop((title, rendition), None)
        if kept is not None:
            kept.set()

    def playlist_cache_control(self, title: str, inner: str, held: float = 0.0) -> str | None:
        """Cache-Control of a running event's media playlist: fresh until shortly before
        the next segment is due (the newest was kept at T, the next is due at T + SEG), so
        a cache asks once per playlist version rather than on a fixed beat, and its
        revalidation then waits for that version (`wait_for_version`) and has it the
        moment it is written. The cache goes stale `HOLD_LEAD_S` (at most half a segment)
        before the due time, give or take the one-second resolution of max-age.

        A cache takes a response to be as old as its ``Date`` (whole seconds) or as the
        time it waited for it (`held`), whichever is more (RFC 9111 §4.2.3), so that age
        is added back: otherwise a version that was waited for would arrive already
        stale. At least 1 s. ``stale-if-error`` (RFC 5861 §4) for `STALE_IF_ERROR_SEGMENTS`
        keeps players going through a short origin blip: an origin restart takes a few
        seconds, and the copy was already about a segment old when the origin went."""
        state = self._titles.get(title)
        if state is None or state.ended:
            return None
        seg = state.event.segment_seconds
        rend = state.renditions.get(inner.rpartition("/")[0])
        max_age = 1
        if rend is not None and rend.kept_at:
            now = time.time()
            stale_at = rend.kept_at + seg - min(HOLD_LEAD_S, seg / 2)
            seen_age = max(now - math.floor(now), held)
            max_age = max(1, math.ceil(stale_at - now + seen_age))
        stale_if_error = math.ceil(STALE_IF_ERROR_SEGMENTS * seg)
        return f"public, max-age={max_age}, stale-if-error={stale_if_error}"

    def _load(self, title: str) -> LiveTitle | None:
        if title in self._titles:
            return self._titles[title]
        directory = self.root / title
        path = directory / EVENT_NAME
        if not path.is_file():
            return None
        doc = decode(LiveEvent, json.loads(path.read_bytes()), EVENT_NAME)
        state = LiveTitle(title, directory, doc, {})
        for name in rendition_names(doc):
            audio = doc.audio is not None and name == doc.audio.name
            rend = state.renditions[name] = Rendition(name, audio=audio)
            rdir = directory / name
            with contextlib.suppress(OSError, BoxError):
                rend.track = _track(rend, (rdir / "init.mp4").read_bytes())
            if rend.track is None:
                continue
            names = sorted(
                (int(m.group(1)), n) for n in os.listdir(rdir) if (m := SEGMENT_RE.match(n))
            )
            for msn, name in names:
                try:
                    data = (rdir / name).read_bytes()
                    timing = parse_segment(data, rend.track)
                except (OSError, BoxError):
                    continue
                if judge(msn, timing, doc.segment_seconds, rend.kept.get(msn - 1)) is None:
                    rend.kept[msn] = Kept(msn, name, timing.start, timing.duration, len(data))
        self._titles[title] = state
        event(log, "live_loaded", title=title, ended=doc.ended)
        return state

    # --- ingest ------------------------------------------------------------------

    def put_event(self, title: str, tmp: Path) -> int:
        """The event document: the first one creates the event, one with ``ended`` ends
        it; returns 201 (created), 200 (accepted)."""
        try:
            doc = decode(LiveEvent, json.loads(tmp.read_bytes()), EVENT_NAME)
        except (ValueError, TypeError) as exc:
            tmp.unlink(missing_ok=True)
            raise ClientError(f"{EVENT_NAME} is not a live event document: {exc}") from None
        directory = self.root / title
        state = self._load(title)
        if state is None:
            tmp.unlink(missing_ok=True)
            if (directory / MANIFEST_NAME).exists():
                raise Conflict(f"Title '{title}' is a packaged VOD title, not a live event.")
            if not 0 < doc.segment_seconds <= 60 or doc.window < 2 * doc.segment_seconds:
                raise ClientError("segment_seconds must be in 0..60 and window hold two segments")
            names = rendition_names(doc)
            if not doc.renditions or any(not RENDITION_RE.match(n) for n in names):
                raise ClientError("renditions must be named with 1-32 of A-Z a-z 0-9 _ -")
            if len(set(names)) != len(names):
                raise ClientError("every rendition, the audio too, needs its own name")
            for name in names:
                (directory / name).mkdir(parents=True, exist_ok=True)
            _write_atomic(directory / EVENT_NAME, json.dumps(encode(doc)).encode())
            self._titles.pop(title, None)
            self._live_cache.pop(title, None)
            self._load(title)
            return 201
        tmp.unlink(missing_ok=True)
        old = state.event
        if (doc.segment_seconds, rendition_names(doc)) != (
            old.segment_seconds, rendition_names(old)
        ):
            raise Conflict(f"Title '{title}' is already live with other segments or renditions.")
        if doc.ended and not old.ended:
            state.event = LiveEvent(old.segment_seconds, old.window, old.renditions, True,
                                    audio=old.audio)
            self._finish(state)
            for hook in self.on_kept:
                for r in state.renditions:
                    hook(title, r)
        return 200

    def put_static(self, title: str, inner: str, tmp: Path) -> int:
        """``master.m3u8`` or ``{rendition}/init.mp4``: first copy wins."""
        state = self._require(title)
        dest = state.directory / inner
        rendition, _, name = inner.rpartition("/")
        if name == "init.mp4":
            rend = self._rendition(state, rendition)
            try:
                track = _track(rend, tmp.read_bytes())
            except BoxError as exc:
                tmp.unlink(missing_ok=True)
                raise MediaError(f"{inner} is not a usable init segment: {exc}.") from None
            kept = _link_first(tmp, dest)
            if kept:
                rend.track = track
            elif rend.track is None:
                rend.track = _track(rend, dest.read_bytes())
            return 201 if kept else 200
        return 201 if _link_first(tmp, dest) else 200

    def put_segment(self, title: str, rendition: str, name: str, msn: int, tmp: Path) -> int:
        state = self._require(title)
        if state.ended:
            tmp.unlink(missing_ok=True)
            raise Conflict(f"The live event '{title}' has ended.")
        rend = self._rendition(state, rendition)
        if rend.track is None:
            tmp.unlink(missing_ok=True)
            raise NotReady(f"PUT {rendition}/init.mp4 before its segments.")
        if msn in rend.kept:
            tmp.unlink(missing_ok=True)
            return 200  # another pipeline's copy came first
        data = tmp.read_bytes()
        try:
            timing = parse_segment(data, rend.track)
        except BoxError as exc:
            tmp.unlink(missing_ok=True)
            raise MediaError(f"{rendition}/{name} is not a usable segment: {exc}.") from None
        why = judge(msn, timing, state.event.segment_seconds, rend.kept.get(msn - 1))
        if why is not None:
            tmp.unlink(missing_ok=True)
            event(log, "live_segment_refused", logging.WARNING, title=title,
                  rendition=rendition, msn=msn, reason=why)
            raise MediaError(f"{rendition}/{name} was not kept: {why}.")
        if not _link_first(tmp, state.directory / rendition / name):
            return 200
        rend.kept[msn] = Kept(msn, name, timing.start, timing.duration, len(data))
        for old in expired(rend.kept, state.event.window, self.grace):
            gone = rend.kept.pop(old)
            (state.directory / rendition / gone.name).unlink(missing_ok=True)
        self._write_playlist(state, rend)
        self._write_mpd(state)
        rend.kept_at = time.time()
        self._announce_kept(title, rendition)
        for hook in self.on_kept:
            hook(title, rendition)
        return 201

    # --- helpers -----------------------------------------------------------------

    def _require(self, title: str) -> LiveTitle:
        state = self._load(title)
        if state is None:
            raise NotReady(f"PUT /v/{title}/{EVENT_NAME} first: '{title}' is not a live event.")
        return state

    def _rendition(self, state: LiveTitle, name: str) -> Rendition:
        rend = state.renditions.get(name)
        if rend is None:
            raise ClientError(f"The live event '{state.title}' has no rendition '{name}'.")
        return rend

    def _write_playlist(self, state: LiveTitle, rend: Rendition) -> None:
        ev = state.event
        window = None if ev.ended else ev.window
        text = media_playlist(rend.kept, ev.segment_seconds, window, ended=ev.ended)
        _write_atomic(state.directory / rend.name / "index.m3u8", text.encode())

    def _write_mpd(self, state: LiveTitle) -> None:
        """The DASH manifest from the same kept segments (`origin.content.livempd`)."""
        ev = state.event
        kept = {name: r.kept for name, r in state.renditions.items()}
        text = live_mpd(ev.renditions, kept, ev.segment_seconds, ev.window, ended=ev.ended,
                        now=time.time(), audio=ev.audio)
        _write_atomic(state.directory / MPD_NAME, text.encode())

    def _finish(self, state: LiveTitle) -> None:
        """The input ended: final playlists, the VOD manifest, the event marked ended."""
        for rend in state.renditions.values():
            self._write_playlist(state, rend)
        self._write_mpd(state)
        ev = state.event
        _write_atomic(state.directory / EVENT_NAME, json.dumps(encode(ev)).encode())
        files = []
        for path in sorted(p for p in state.directory.rglob("*") if p.is_file()):
            rel = path.relative_to(state.directory).as_posix()
            if rel in (EVENT_NAME, MANIFEST_NAME) or any(
                part.startswith(".") for part in rel.split("/")
            ):
                continue
            files.append(FileEntry(rel, path.stat().st_size, sha256_file(path)))
        duration = max(
            (sum(k.duration for k in r.kept.values()) for r in state.renditions.values()),
            default=0.0,
        )
        manifest = TitleManifest(
            title=state.title, duration=round(duration, 3), segment_seconds=ev.segment_seconds,
            format="fmp4", single_file=False, renditions=list(ev.renditions), files=files,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        _write_atomic(state.directory / MANIFEST_NAME,
                      (json.dumps(encode(manifest), indent=2) + "\n").encode())
        self._live_cache.pop(state.title, None)
        event(log, "live_ended", title=state.title, files=len(files))
