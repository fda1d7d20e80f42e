"""Coalesced, streamed fills: one upstream fetch per object however many clients ask.

Within a process, the first request for a missing key creates a `Fill` and the others
join it. Across worker processes, the `Fill` first takes an exclusive lock on one byte of
``fill.lock`` (an open-file-description lock, released by the kernel if the process dies):

* lock taken → this process leads: it fetches from the upstream chain, writes the body to
  ``tmp/<h>.<id>.part`` and publishes the headers in ``tmp/<h>.json`` for other workers;
* lock busy → another worker leads: this process waits for that sidecar, opens the growing
  file and follows its size (polling), until the leader's lock is gone and the index holds
  the finished object, which must be the very file followed (same inode).

Every reader streams from the growing file with ``pread`` as bytes arrive, so the first
client, the hundredth client and a client asking for a range inside the object all get
bytes before the fill completes. A fill never becomes visible as a hit until
`CacheStore.publish` has checked its size; a failed fill removes its temp files, and
readers that already sent headers abort their connections rather than send short bodies.

A response the cache may not store (no-store, private, an error status, Vary) is handed
to exactly one waiter as a pass-through; the other waiters fetch for themselves, as a
cache must not share what it may not store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import secrets
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge import freshness, vary
from edge.forwarding import VIA
from edge.llhls import blocking_key
from edge.revalidate import refreshed
from edge.store import CacheStore, Entry, key_hash
from edge.upstream import Upstream, UpstreamChain, UpstreamResponse
from vcdn.errors import IntegrityError, StoreError, UpstreamError, VcdnError
from vcdn.httpserve.validators import format_http_date, parse_http_date
from vcdn.logs import event

log = logging.getLogger("vcdn.edge.fill")

#: How often a follower in another process looks at the growing file and at the lock.
POLL_INTERVAL: Final = 0.002
LOCK_POLL_EVERY: Final = 10
#: How long a follower waits for a remote leader to publish its headers.
META_WAIT: Final = 30.0
#: A body that breaks off is resumed with a range request at most this many times.
MAX_RESUMES: Final = 2
_LOCK_SPAN: Final = 1 << 40


class FillFailed(UpstreamError):
    """The fill this request was waiting on failed."""


@dataclass(frozen=True, slots=True)
class Pass:
    """A response the cache will not store, for the one waiter that claimed it."""

    response: UpstreamResponse


@dataclass(frozen=True, slots=True)
class Tail:
    """A growing object to stream: the fill and a private fd on its file (caller closes)."""

    fill: Fill
    fd: int


class Fill:
    """One object being fetched: its headers (`draft`), bytes written so far, outcome."""

    __slots__ = (
        "_changed",
        "_claimed",
        "_watchers",
        "done",
        "draft",
        "ended",
        "entry",
        "error",
        "fd",
        "generation",
        "key",
        "mark",
        "ready",
        "source",
        "written",
    )

    def __init__(self, key: str) -> None:
        self.key = key
        loop = asyncio.get_running_loop()
        #: Resolves to an Entry (a hit: filled elsewhere or revalidated), to this Fill
        #: (stream it), or to a Pass (not storable), or raises.
        self.ready: asyncio.Future[Entry | Fill | Pass] = loop.create_future()
        self.draft: Entry | None = None
        self.fd = -1
        self.written = 0
        self.done = False
        self.error: BaseException | None = None
        self.entry: Entry | None = None
        self.source = "origin"
        #: The store's purge counter when the fill began (a purge since: not stored).
        self.generation = 0
        #: The key's last invalidation then (`CacheStore.removal_mark`; a new one: not stored).
        self.mark = 0
        self._claimed = False
        self._changed = asyncio.Event()
        #: True once the upstream's body ended whole (before it is published).
        self.ended = False
        #: Called synchronously whenever the fill changes (`watch`).
        self._watchers: list[Callable[[], None]] = []

    @property
    def size(self) -> int | None:
        """The object's size if the upstream declared it (else known only when done)."""
        if self.done and self.error is None:
            return self.written
        return self.draft.size if self.draft is not None and self.draft.size >= 0 else None

    def claim(self) -> bool:
        """True for the first waiter only (the one that gets a pass-through)."""
        first = not self._claimed
        self._claimed = True
        return first

    def advance(self, total: int) -> None:
        self.written = total
        self._notify()

    def body_ended(self) -> None:
        """The upstream's body ended whole; the object is about to be published."""
        self.ended = True
        self._notify()

    @property
    def whole(self) -> bool:
        """Every byte of the declared length is in the file (which is still open)."""
        draft = self.draft
        return draft is not None and 0 <= draft.size <= self.written and not self.done

    def watch(self, listener: Callable[[], None]) -> None:
        """Call `listener` (which must not raise) in the very turn of the loop the fill
        changes: bytes written, body ended, fill done. An LL-HLS crowd's answer leaves
        then (`edge.llcrowd`), without a task waking up for it."""
        self._watchers.append(listener)

    def finish(self, entry: Entry | None, error: BaseException | None = None) -> None:
        self.done = True
        self.entry = entry
        self.error = error
        if not self.ready.done():
            if error is not None:
                self.ready.set_exception(error)
                self.ready.exception()  # retrieved: nobody may be waiting
            elif entry is not None:
                self.ready.set_result(entry)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in self._watchers:
            listener()
        if self.done:
            self._watchers = []

    async def finished(self) -> None:
        """Wait until the fill has ended, whatever its outcome."""
        while not self.done:
            await self._changed.wait()

    async def wait_beyond(self, offset: int) -> int:
        """Wait until more than `offset` bytes are written (or the fill ends); the count."""
        while self.written <= offset and not self.done:
            await self._changed.wait()
        if self.written <= offset and self.error is not None:
            raise FillFailed(f"The fill of {self.key!r} failed: {self.error}.")
        return self.written


class KeyLocks:
    """One exclusive lock per key across processes: a byte of a shared lock file.

    Open-file-description locks (F_OFD_SETLK) conflict between any two open files, in one
    process or two, and vanish when the holder dies, so `kill -9` of a leader frees its
    objects for another worker.
    """

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    @staticmethod
    def offset(key: str) -> int:
        return int(key_hash(key)[:10], 16) % _LOCK_SPAN

    def _op(self, kind: int, offset: int) -> bool:
        flock = struct.pack("hhqqi4x", kind, os.SEEK_SET, offset, 1, 0)
        try:
            fcntl.fcntl(self.fd, fcntl.F_OFD_SETLK, flock)
        except (BlockingIOError, PermissionError):
            return False
        return True

    def try_acquire(self, key: str) -> bool:
        return self._op(fcntl.F_WRLCK, self.offset(key))

    def release(self, key: str) -> None:
        self._op(fcntl.F_UNLCK, self.offset(key))

    def held_elsewhere(self, key: str) -> bool:
        """True while another open file holds the key's lock (probe by taking it)."""
        off = self.offset(key)
        if self._op(fcntl.F_WRLCK, off):
            self._op(fcntl.F_UNLCK, off)
            return False
        return True

    def close(self) -> None:
        os.close(self.fd)


Target = Callable[[Upstream], str]
Run = Callable[..., "asyncio.Future[object]"]


class Fills:
    """The coalescing fill manager of one worker process."""

    def __init__(
        self,
        store: CacheStore,
        chain: UpstreamChain,
        *,
        run: Callable[..., object],
        content_type: Callable[[str], str],
        on_fill: Callable[[str, int], None] | None = None,
    ) -> None:
        self.store = store
        self.chain = chain
        self.locks = KeyLocks(store.root / "fill.lock")
        self._run = run  # runs a blocking store call off the event loop
        self._content_type = content_type
        self._on_fill = on_fill
        self._inflight: dict[str, Fill] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def inflight(self, key: str) -> Fill | None:
        return self._inflight.get(key)

    def detach(self, *, purge: bool = True) -> None:
        """Let no new request join a fill under way that a purge (`purge`) or an
        invalidation of its URL dooms: they start fills of their own, which ask the index
        and the upstream again. Readers already streaming a fill go on to its end. The
        fills of other URLs stay joinable (else their next requests would fetch again)."""
        if purge:
            self._inflight.clear()
            return
        for key, fill in list(self._inflight.items()):
            if self.store.removal_mark(key) != fill.mark:
                del self._inflight[key]

    async def obtain(
        self,
        key: str,
        *,
        title: str,
        path: str,
        target: Target,
        stale: Entry | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Entry | Tail | Pass | None:
        """Join or start the fill of `key`; None means "fetch it yourself" (not shareable).

        `stale` is a stored but stale entry: the upstream is asked conditionally, and a 304
        turns into the refreshed Entry. `headers` are the request fields a new fill sends
        (`edge.forwarding.fill_request` of its first requester; default: only Via).
        """
        fill = self._inflight.get(key)
        if fill is None:
            fill = Fill(key)
            fill.generation = self.store.generation.purges()
            fill.mark = self.store.removal_mark(key)
            self._inflight[key] = fill
            task = asyncio.create_task(
                self._drive(fill, title, path, target, stale, headers or {"Via": VIA})
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        outcome = await asyncio.shield(fill.ready)
        if isinstance(outcome, Pass):
            return outcome if fill.claim() else None
        if isinstance(outcome, Fill):
            # No await between this check and the dup: the leader closes its fd only
            # after marking the fill done, so an undone fill's fd is still open.
            if fill.done:
                if fill.error is not None or fill.entry is None:
                    raise FillFailed(f"The fill of {key!r} failed: {fill.error}.")
                return fill.entry
            return Tail(fill, os.dup(fill.fd))
        return outcome

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        self.locks.close()

    # --- the leader/follower state machine ----------------------------------------------

    async def _drive(
        self,
        fill: Fill,
        title: str,
        path: str,
        target: Target,
        stale: Entry | None,
        headers: Mapping[str, str],
    ) -> None:
        try:
            deadline = time.monotonic() + META_WAIT
            while True:
                if self.locks.try_acquire(fill.key):
                    try:
                        # Someone may have finished between our miss and our lock.
                        current = self.store.peek(fill.key)
                        if current is not None and (stale is None or current.id != stale.id):
                            fill.finish(current)
                            return
                        await self._lead(
                            fill, title, path, target, current if stale else None, headers
                        )
                    finally:
                        self.locks.release(fill.key)
                    return
                if await self._follow(fill):
                    return
                if time.monotonic() > deadline:
                    raise FillFailed(f"Another worker holds the fill of {fill.key!r} too long.")
                # A blocking LL-HLS playlist request is answered the moment its part
                # exists, to a crowd of players here too: look more often for its head.
                await asyncio.sleep(POLL_INTERVAL if blocking_key(fill.key) else POLL_INTERVAL * 5)
        except asyncio.CancelledError:
            fill.finish(None, FillFailed("The edge is shutting down."))
            raise
        except VcdnError as exc:
            fill.finish(None, exc)
        except Exception as exc:
            log.exception("fill_crashed", extra={"fields": {"key": fill.key}})
            fill.finish(None, StoreError(f"The fill of {fill.key!r} failed: {exc}."))
        finally:
            if self._inflight.get(fill.key) is fill:
                del self._inflight[fill.key]
            if fill.fd >= 0:
                os.close(fill.fd)
                fill.fd = -1

    async def _lead(
        self,
        fill: Fill,
        title: str,
        path: str,
        target: Target,
        stale: Entry | None,
        request: Mapping[str, str],
    ) -> None:
        headers = dict(request)
        if stale is not None:
            if stale.etag:
                headers["If-None-Match"] = stale.etag
            if stale.last_modified is not None:
                headers["If-Modified-Since"] = format_http_date(stale.last_modified)
        part, meta = self.store.temp_paths(fill.key)
        fill_id = secrets.token_hex(4)
        part = part.with_name(f"{part.stem}.{fill_id}.part")
        # Creating a file can take a millisecond on a busy file system: do it in a thread
        # while the upstream thinks, not on the loop after its answer.
        opening = asyncio.get_running_loop().run_in_executor(None, _create, part)
        try:
            resp = await self.chain.fetch("GET", target, headers)
        except BaseException:
            await _discard(opening, part)
            raise
        fill.source = resp.source
        if resp.status != 200:
            await _discard(opening, part)
        if resp.status == 304 and stale is not None:
            resp.close()
            changes = refreshed(
                stale, resp.headers.items(), resp.request_time, resp.response_time
            )
            entry = await self._run(self.store.refresh, fill.key, **changes)
            fill.finish(entry or stale)
            event(log, "revalidated", key=fill.key, source=resp.source)
            return
        ok, why = freshness.storable("GET", resp.status, {}, resp.headers)
        length = _content_length(resp.headers)
        if ok and length is not None and length > self.store.capacity:
            ok, why = False, "larger than the cache"
        if not ok:
            if resp.status == 200:
                await _discard(opening, part)
            event(log, "not_stored", key=fill.key, status=resp.status, reason=why)
            fill.ready.set_result(Pass(resp))
            return
        # A Vary response is stored as a variant, keyed by the fields this fill sent.
        store_key = vary.storage_key(
            vary.primary_of(fill.key), ", ".join(resp.headers.getall("Vary", [])), request
        )
        draft = self._draft(store_key or fill.key, title, path, resp, length)
        try:
            fill.fd = await opening
        except OSError as exc:
            resp.close()
            raise StoreError(f"Cannot write to the cache: {exc.strerror}.") from None
        fill.draft = draft
        fill.ready.set_result(fill)
        if not blocking_key(fill.key):
            # Let this worker's waiters send their headers before we tell the other workers
            # (the sidecar costs a write and a rename); they wait on the lock meanwhile. Two
            # turns of the loop: one for the shield around `ready`, one for the waiter
            # itself. A blocking playlist's waiters are a crowd answered with the body.
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        written = 0
        resumes = 0
        try:
            _write_meta(meta, draft, fill_id, resp.source, fill.generation)
            while True:
                try:
                    async for chunk in resp.chunks():
                        view = memoryview(chunk)
                        while view:
                            n = os.write(fill.fd, view)
                            view = view[n:]
                        written += len(chunk)
                        fill.advance(written)
                        # Buffered chunks come without suspending; yield so that readers
                        # send what just landed (first bytes early) instead of waiting
                        # for the whole socket buffer to be drained into the file.
                        await asyncio.sleep(0)
                    break
                except UpstreamError as exc:
                    if resumes >= MAX_RESUMES or length is None or written >= length:
                        raise
                    resumes += 1
                    resp = await self._resume(target, draft, written, length, exc)
            if length is not None and written != length:
                raise IntegrityError(f"{resp.name} sent {written} of {length} bytes.")
            fill.body_ended()
            entry = await self._run(
                self.store.publish, dataclasses.replace(draft, size=written), part, fd=fill.fd,
                generation=fill.generation, mark=fill.mark,
            )
        except BaseException as exc:
            resp.close()
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            with contextlib.suppress(FileNotFoundError):
                meta.unlink()
            event(log, "fill_failed", logging.WARNING, key=fill.key, error=str(exc))
            fill.finish(None, exc if isinstance(exc, VcdnError) else FillFailed(str(exc)))
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        with contextlib.suppress(FileNotFoundError):
            meta.unlink()
        await self._supersede(entry)
        fill.finish(entry)
        if self._on_fill is not None:
            self._on_fill(resp.source, written)
        event(log, "filled", key=fill.key, bytes=written, source=resp.source)

    async def _supersede(self, entry: Entry) -> None:
        """The newest answer for a URL decides whether it varies (§4.1): a plain answer
        replaces stored variants, a variant replaces a stored plain answer."""
        primary = vary.primary_of(entry.key)
        if entry.key == primary:
            if self.store.variants(primary):
                await self._run(self.store.remove_variants, primary, invalidate=False)
        elif self.store.get(primary) is not None or self.store.peek(primary) is not None:
            await self._run(self.store.remove, primary, invalidate=False)

    async def _resume(
        self, target: Target, draft: Entry, offset: int, length: int, cause: UpstreamError
    ) -> UpstreamResponse:
        """Ask the chain for the rest of a body that broke off: ``Range: bytes=offset-``
        with ``If-Range`` (RFC 9110 §13.1.5), so a changed object cannot be spliced in."""
        if not draft.etag or draft.etag.startswith("W/"):
            raise cause  # If-Range needs a strong validator
        headers = {"Via": VIA, "Range": f"bytes={offset}-", "If-Range": draft.etag}
        try:
            resp = await self.chain.fetch("GET", target, headers)
        except UpstreamError:
            raise cause from None
        expect = f"bytes {offset}-{length - 1}/{length}"
        if (
            resp.status != 206
            or resp.headers.get("Content-Range") != expect
            or resp.headers.get("ETag") != draft.etag
        ):
            resp.close()
            raise cause
        event(log, "fill_resumed", key=draft.key, offset=offset, source=resp.source)
        return resp

    def _draft(
        self, key: str, title: str, path: str, resp: UpstreamResponse, length: int | None
    ) -> Entry:
        h = resp.headers
        lm_text = h.get("Last-Modified")
        lm = parse_http_date(lm_text) if lm_text else None
        pol = freshness.policy(h, resp.response_time)
        return Entry(
            key=key,
            title=title,
            path=path,
            size=-1 if length is None else length,
            content_type=h.get("Content-Type") or self._content_type(path),
            etag=h.get("ETag"),
            last_modified=float(lm) if lm is not None else None,
            cache_control=", ".join(h.getall("Cache-Control", [])) or None,
            headers=tuple(freshness.end_to_end(_with_expires(h))),
            response_time=resp.response_time,
            initial_age=freshness.initial_age(h, resp.request_time, resp.response_time),
            lifetime=pol.lifetime,
        )

    async def _follow(self, fill: Fill) -> bool:
        """Follow another worker's fill of this key; False to try to lead again."""
        part_path, meta_path = self.store.temp_paths(fill.key)
        fill_id, draft, source = _read_meta(meta_path, fill.generation)
        if fill_id is None or draft is None:
            if not self.locks.held_elsewhere(fill.key):
                return False
            await asyncio.sleep(POLL_INTERVAL)
            return False
        try:
            fd = os.open(
                part_path.with_name(f"{part_path.stem}.{fill_id}.part"), os.O_RDONLY | os.O_CLOEXEC
            )
        except FileNotFoundError:
            return False
        fill.fd = fd
        fill.draft = draft
        fill.source = "peer-worker" if source is None else source
        fill.ready.set_result(fill)
        polls = 0
        while True:
            size = os.fstat(fd).st_size
            if size != fill.written:
                fill.advance(size)
            if draft.size >= 0 and size >= draft.size:
                pass  # complete on disk; wait for the index to confirm below
            polls += 1
            if polls % LOCK_POLL_EVERY == 0 and not self.locks.held_elsewhere(fill.key):
                entry = await self._run(self.store.lookup, draft.key)
                if entry is not None:
                    try:
                        same = os.stat(self.store.file_path(entry)).st_ino == os.fstat(fd).st_ino
                    except FileNotFoundError:
                        same = False
                    if same:
                        fill.advance(entry.size)
                        fill.finish(entry)
                        return True
                fill.finish(None, FillFailed(f"Another worker's fill of {fill.key!r} failed."))
                return True
            await asyncio.sleep(POLL_INTERVAL)


def _create(part: Path) -> int:
    return os.open(part, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)


async def _discard(opening: asyncio.Future[int], part: Path) -> None:
    """Undo a temp file created for a fill that will not happen."""
    try:
        fd = await opening
    except OSError:
        return
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(part)


def _content_length(headers: Mapping[str, str]) -> int | None:
    text = headers.get("Content-Length")
    if text is None or not text.strip().isdigit():
        return None
    return int(text.strip())


def _with_expires(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    return list(headers.items())


def _write_meta(path: Path, draft: Entry, fill_id: str, source: str, generation: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    doc = {
        "fill_id": fill_id, "source": source, "generation": generation,
        "entry": dataclasses.asdict(draft),
    }
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def _read_meta(path: Path, generation: int) -> tuple[str | None, Entry | None, str | None]:
    """The sidecar of another worker's fill, if that fill began in `generation` (one that
    began before a purge must not be followed: its bytes are the purged ones)."""
    try:
        doc = json.loads(path.read_text())
        if doc.get("generation") != generation:
            return None, None, None
        fields = doc["entry"]
        fields["headers"] = tuple(tuple(p) for p in fields["headers"])
        return str(doc["fill_id"]), Entry(**fields), doc.get("source")
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None, None, None
