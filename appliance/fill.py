"""The manifest fill: fetch what the fill manifest lists and the cache lacks, verified.

Per title, most popular first: every missing file is fetched into the staging area
(``cache_dir/staging/{title}/...``), peers of the site first and the origin last, each
file verified against the manifest's size and sha256 as it arrives (`download`); a file
that fails verification is counted and fetched again from the next source. Only when
*every* file of the title is staged are they handed to the store's atomic import, so a
title becomes servable whole. Staged files survive a crash (they are verified before
they get their final name) and are re-checked and reused when the fill resumes.

The fill stops itself, rather than fail half-way, when the disk is full or the free space
would drop below the floor; it says why in `Status.fill.paused` and in metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import aiohttp

from appliance import fill_plan
from appliance.cache import Store
from appliance.download import PART_SUFFIX, fetch_verified
from appliance.fill_plan import Source, TitleWork
from appliance.metrics import ApplianceMetrics
from appliance.pacing import TokenBucket
from appliance.settings import ApplianceSettings
from appliance.state import Status
from edge.store import object_key
from vcdn import peering, tokens
from vcdn.checksums import sha256_file
from vcdn.errors import DiskFull, IntegrityError, StoreError, UpstreamError
from vcdn.httpserve.media import cache_control, media_type
from vcdn.logs import event
from vcdn.schemas import Check, FileEntry, FillManifest

log = logging.getLogger("vcdn.appliance.fill")
# RFC 9111 §5.2.1.7: a peer answers from its cache or 504; it never fetches upstream for
# us, so a peer is never an open proxy and a miss costs one round trip.
PINS_FILE: Final = "pinned-titles.json"
Runner = Callable[..., Awaitable[Any]]


class FillPaused(Exception):
    """The fill stopped itself; the message says why (`reason` is the metrics label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Filler:
    """Runs fill passes over a manifest for one appliance (see module doc)."""

    def __init__(
        self,
        settings: ApplianceSettings,
        store: Store,
        session: aiohttp.ClientSession,
        status: Status,
        metrics: ApplianceMetrics,
        *,
        run: Runner | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.session = session
        self.status = status
        self.metrics = metrics
        self.staging = settings.cache_dir / "staging"
        self.bucket = TokenBucket(rate=float(settings.fill_bandwidth))
        self.run_store: Runner = run or asyncio.to_thread
        self.clock = clock
        self._keys = settings.keys
        # Titles we pinned, kept on disk: a title dropped from the manifest while we were
        # down must still be unpinned after a restart, or it would never become evictable.
        self._pins_file = settings.cache_dir / PINS_FILE
        self._pinned: set[str] | None = None

    def set_keys(self, keys: tokens.KeyRing) -> None:
        self._keys = keys

    def _token(self, title: str) -> str | None:
        """A short-lived signed token for a peer request (the key shared by the site)."""
        return peering.token(self._keys, title, self.clock())

    # --- pins ---------------------------------------------------------------------------

    async def apply_pins(self, manifest: FillManifest, plan: fill_plan.Plan) -> None:
        """Pin the manifest's titles; unpin the ones it dropped (evicted only when needed)."""
        wanted = set(plan.titles)
        if self._pinned is None:
            self._pinned = await asyncio.to_thread(_read_pins, self._pins_file)
        if wanted == self._pinned:
            return
        for title in wanted - self._pinned:
            await self.run_store(self.store.pin_title, title)
        for title in fill_plan.to_unpin(self._pinned, wanted):
            await self.run_store(self.store.unpin_title, title)
            event(log, "title_unpinned", title=title)
        self._pinned = wanted
        await asyncio.to_thread(_write_pins, self._pins_file, wanted)

    # --- one pass -----------------------------------------------------------------------

    def _have(self, title: str, entry: FileEntry) -> bool:
        """Held with the manifest's digest (an object filled on demand may carry none)."""
        stored = self.store.get(object_key(title, entry.path))
        if stored is None:
            stored = self.store.lookup(object_key(title, entry.path))
        if stored is None:
            return False
        return stored.sha256 is None or stored.sha256 == entry.sha256.lower()

    def plan(self, manifest: FillManifest) -> fill_plan.Plan:
        return fill_plan.plan(
            manifest, self._have, self.settings.origin_url, self.settings.public_url
        )

    def _progress(self, plan: fill_plan.Plan) -> None:
        progress = self.status.fill
        progress.titles_total = len(plan.work)
        progress.titles_complete = sum(1 for w in plan.work if w.complete)
        progress.bytes_total = sum(sum(f.size for f in w.files) for w in plan.work)
        progress.bytes_missing = plan.missing_bytes
        self.metrics.fill_titles_complete.set(progress.titles_complete)
        self.metrics.fill_bytes_missing.set(progress.bytes_missing)

    async def run(self, manifest: FillManifest, *, download: bool) -> bool:
        """One pass: pins always; downloads when `download`. True when all titles are whole."""
        plan = await self.run_store(self.plan, manifest)
        for title, reason in plan.rejected:
            event(log, "manifest_title_rejected", logging.WARNING, title=title, reason=reason)
        await self.apply_pins(manifest, plan)
        self._progress(plan)
        if not download:
            return not plan.missing_bytes
        progress = self.status.fill
        progress.running, progress.bytes_fetched, progress.last_error = True, 0, ""
        if plan.missing_bytes:
            # Peer notes describe this pass only: peers come and go with the manifest.
            for name in [n for n in self.status.upstream if n.startswith("peer ")]:
                del self.status.upstream[name]
        failed = 0
        started = time.monotonic()
        try:
            for work in plan.work:
                if work.complete:
                    continue
                progress.current = work.title
                self._check_room(work)
                if await self._fill_title(work):
                    progress.titles_complete += 1
                    progress.bytes_missing -= work.missing_bytes
                else:
                    failed += 1
                    self.metrics.fill_title_failures.inc()
            self._set_paused(None)
        except FillPaused as exc:
            self._set_paused(exc.reason, str(exc))
            event(log, "fill_paused", logging.WARNING, reason=exc.reason, detail=str(exc))
            return False
        finally:
            progress.running, progress.current = False, ""
            progress.last_run_at = time.time()
            self._progress(await self.run_store(self.plan, manifest))
        event(
            log, "fill_pass_done", titles=len(plan.work), failed=failed,
            bytes=progress.bytes_fetched, seconds=round(time.monotonic() - started, 3),
        )
        return failed == 0

    def _set_paused(self, reason: str | None, message: str = "") -> None:
        self.status.fill.paused = message if reason else ""
        self.metrics.set_paused(reason)

    def _check_room(self, work: TitleWork) -> None:
        """Pause before writing when the title would push free space under the floor.

        Staging plus the store's import copy need the missing bytes and one more file.
        """
        try:
            usage = shutil.disk_usage(self.settings.cache_dir)
        except OSError as exc:
            raise FillPaused("disk_full", f"Cannot read the cache disk usage: {exc}.") from None
        need = work.missing_bytes + max((f.size for f in work.missing), default=0)
        if usage.free - need < self.settings.cache_free_floor:
            raise FillPaused(
                "free_space_floor",
                f"Fill paused: title {work.title!r} needs {need} bytes but the cache disk has "
                f"{usage.free} free and the floor is {self.settings.cache_free_floor}.",
            )

    # --- one title ----------------------------------------------------------------------

    async def _fill_title(self, work: TitleWork) -> bool:
        folder = self.staging / work.title
        limit = asyncio.Semaphore(self.settings.fill_concurrency)

        async def one(entry: FileEntry) -> bool:
            async with limit:
                return await self._fetch_file(work, entry, folder / entry.path)

        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(one(f)) for f in work.missing]
        except* StoreError as group:  # DiskFull included: stop the pass, keep nothing half
            self._discard(folder)
            raise FillPaused("disk_full", f"Fill paused: {group.exceptions[0]}") from None
        if not all(t.result() for t in tasks):
            event(log, "title_fill_failed", logging.WARNING, title=work.title)
            self.status.fill.last_error = f"title {work.title!r}: no source had every file"
            return False
        try:
            for entry in work.missing:
                staged = folder / entry.path
                await self.run_store(
                    self.store.import_file, work.title, entry.path, staged, entry.size,
                    entry.sha256, content_type=media_type(entry.path),
                    cache_control=cache_control(entry.path), pinned=True,
                )
                staged.unlink(missing_ok=True)
        except IntegrityError as exc:  # the staged file rotted on disk: fetch again next pass
            self._discard(folder)
            self.status.fill.last_error = str(exc)
            return False
        except (DiskFull, StoreError) as exc:
            self._discard(folder)
            raise FillPaused("capacity" if isinstance(exc, DiskFull) else "disk_full",
                             f"Fill paused: {exc}") from None
        self._discard(folder)
        event(log, "title_filled", title=work.title, files=len(work.missing),
              bytes=work.missing_bytes)
        return True

    def _discard(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)

    async def _fetch_file(self, work: TitleWork, entry: FileEntry, dest: Path) -> bool:
        """Stage one file from the first source that gives the right bytes."""
        if await asyncio.to_thread(_reuse_staged, dest, entry):
            return True
        for source in work.sources:
            peer = source.kind == "peer"
            url = source.url(work.title, entry.path, self._token(work.title) if peer else None)
            try:
                n = await fetch_verified(
                    self.session, url, dest, entry, bucket=self.bucket,
                    headers=peering.HEADERS if peer else None,
                    read_timeout=self.settings.upstream_timeout, on_bytes=self._received,
                )
            except IntegrityError as exc:
                self.metrics.fill_rejected.labels(source.kind, "integrity").inc()
                self.status.fill.rejected += 1
                event(log, "fill_file_rejected", logging.WARNING, title=work.title,
                      path=entry.path, source=source.kind, url=url, reason=str(exc))
                continue
            except UpstreamError as exc:
                self.metrics.fill_errors.labels(source.kind).inc()
                self._note_upstream(source, ok=False, detail=str(exc))
                event(log, "fill_source_failed", logging.INFO, title=work.title,
                      path=entry.path, source=source.kind, url=url, reason=str(exc))
                continue
            self._note_upstream(source, ok=True, detail="")
            self.metrics.fill_bytes.labels(source.kind).inc(n)
            self.metrics.fill_files.labels(source.kind).inc()
            if source.kind == "peer":
                self.status.fill.from_peers += 1
            else:
                self.status.fill.from_origin += 1
            event(log, "fill_file", title=work.title, path=entry.path, source=source.kind,
                  url=url, bytes=n)
            return True
        return False

    def _received(self, n: int) -> None:
        self.status.fill.bytes_fetched += n

    def _note_upstream(self, source: Source, *, ok: bool, detail: str) -> None:
        name = "origin" if source.kind == "origin" else f"peer {source.base}"
        self.status.upstream[name] = Check(ok=ok, detail=detail)


def _reuse_staged(dest: Path, entry: FileEntry) -> bool:
    """True when a staged file from an earlier pass (or before a crash) is still good.

    It got its name only once verified, but the disk may have rotted it since, so check
    again rather than trust; a leftover ``.part`` is garbage by construction.
    """
    with contextlib.suppress(FileNotFoundError):
        os.unlink(dest.with_name(dest.name + PART_SUFFIX))
    try:
        if sha256_file(dest) == entry.sha256.lower():
            return True
    except FileNotFoundError:
        return False
    dest.unlink(missing_ok=True)
    return False


def _read_pins(path: Path) -> set[str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    return {t for t in data if isinstance(t, str)} if isinstance(data, list) else set()


def _write_pins(path: Path, titles: set[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(sorted(titles)))
        os.replace(tmp, path)
    except OSError:  # a full disk: the store's pins stand; we retry on the next change
        tmp.unlink(missing_ok=True)
