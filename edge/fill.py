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

What to do with the upstream's answer is decided apart, pure (`edge.fill_decision`); the
lock is `edge.fill_locks`, the sidecar `edge.fill_sidecar`, what waiters hold
`edge.fill_state`. This module is the state machine that drives them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from edge import vary
from edge.fill_decision import NotStorable, Revalidated, conditional, decide
from edge.fill_locks import KeyLocks
from edge.fill_sidecar import read_meta, write_meta
from edge.fill_state import Fill, FillFailed, Pass, Tail
from edge.forwarding import VIA
from edge.llhls import blocking_key
from edge.store import CacheStore, Entry
from edge.upstream import Upstream, UpstreamChain, UpstreamResponse
from vcdn.aiotasks import cancel_all
from vcdn.errors import IntegrityError, StoreError, UpstreamError, VcdnError
from vcdn.logs import event

log = logging.getLogger("vcdn.edge.fill")

#: How often a follower in another process looks at the growing file and at the lock.
POLL_INTERVAL: Final = 0.002
LOCK_POLL_EVERY: Final = 10
#: How long a follower waits for a remote leader to publish its headers.
META_WAIT: Final = 30.0
#: A body that breaks off is resumed with a range request at most this many times.
MAX_RESUMES: Final = 2
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
        await cancel_all(self._tasks)
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
        headers = conditional(request, stale)
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
        decision = decide(
            key=fill.key, title=title, path=path, status=resp.status, headers=resp.headers,
            request_time=resp.request_time, response_time=resp.response_time, stale=stale,
            capacity=self.store.capacity, request=request, content_type=self._content_type,
        )
        if isinstance(decision, Revalidated):
            assert stale is not None
            resp.close()
            entry = await self._run(self.store.refresh, fill.key, **decision.changes)
            fill.finish(entry or stale)
            event(log, "revalidated", key=fill.key, source=resp.source)
            return
        if isinstance(decision, NotStorable):
            if resp.status == 200:
                await _discard(opening, part)
            event(log, "not_stored", key=fill.key, status=resp.status, reason=decision.reason)
            fill.ready.set_result(Pass(resp))
            return
        draft, length = decision.draft, decision.length
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
            write_meta(meta, draft, fill_id, resp.source, fill.generation)
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

    async def _follow(self, fill: Fill) -> bool:
        """Follow another worker's fill of this key; False to try to lead again."""
        part_path, meta_path = self.store.temp_paths(fill.key)
        fill_id, draft, source = read_meta(meta_path, fill.generation)
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
