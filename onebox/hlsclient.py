"""A small HLS client that survives appliance failures: the ranked URL list is its fallback.

Steering answers a playback request with several signed master-playlist URLs, best first,
on different appliances. Every URL has the same shape (``.../s/{token}/{title}/master.m3u8``)
so any path below the title resolves against any of them. The client reads the master
playlist, one rendition's media playlist, its init section and every segment; when a fetch
fails (refused, reset, timeout, non-2xx, or bytes that do not match the manifest's sha256)
it moves to the next URL and asks for the same path there, and when every URL has failed it
can ask steering again (`refresh`). A fetch counts as failed only when no URL delivered it.

Used by `vcdn up` (the demo's play step) and by the chaos test.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urljoin, urlsplit

import aiohttp

from vcdn.errors import ClientError, IntegrityError, UpstreamError, UpstreamStatus, UpstreamTimeout
from vcdn.hlsplaylist import MediaPlaylist, Part, Variant, parse_master, parse_media

DEFAULT_TIMEOUT: Final = 3.0
DEFAULT_ROUNDS: Final = 4
# Between two rounds over the whole list: long enough for steering to notice a dead box.
ROUND_BACKOFF: Final = 0.5

Refresh = Callable[[], Awaitable[list[str]]]


@dataclass(frozen=True, slots=True)
class Fetch:
    """One resource as delivered: which server gave it, how big, how long it took."""

    path: str
    server: str
    size: int
    sha256: str
    seconds: float
    attempts: int


@dataclass
class PlayReport:
    """What one playback did; `failed` lists the paths that no URL could deliver."""

    variant: str = ""
    fetches: list[Fetch] = field(default_factory=list)
    failovers: int = 0
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def worst_stall(self) -> float:
        """The longest time one resource took among those that needed a failover."""
        return max((f.seconds for f in self.fetches if f.attempts > 1), default=0.0)

    @property
    def bytes_by_server(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.fetches:
            out[f.server] = out.get(f.server, 0) + f.size
        return out

    @property
    def segments(self) -> list[Fetch]:
        return [f for f in self.fetches if not f.path.endswith(".m3u8")]


def base_of(master_url: str) -> str:
    """``http://h/s/T/title/master.m3u8`` → ``http://h/s/T/title/``."""
    return master_url.rsplit("/", 1)[0] + "/"


def resolve(relative_to: str, uri: str) -> str:
    """A playlist URI as a path below the title, so it can be asked of any appliance."""
    if urlsplit(uri).scheme:
        return uri
    return posixpath.normpath(posixpath.join(posixpath.dirname(relative_to), uri))


class FailoverClient:
    """GETs paths below a title from the first URL that delivers them."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        urls: list[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        rounds: int = DEFAULT_ROUNDS,
        refresh: Refresh | None = None,
        expected: Mapping[str, str] | None = None,
    ) -> None:
        if not urls:
            raise ClientError("No playback URL to play from; steering returned an empty list.")
        self.session = session
        self.urls = list(urls)
        self.current = 0
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 1.0))
        self.rounds = rounds
        self.refresh = refresh
        self.expected = dict(expected or {})
        self.failovers = 0
        self.errors: list[str] = []
        self._whole: dict[str, _Whole] = {}

    @property
    def master_path(self) -> str:
        return self.urls[0].rsplit("/", 1)[1]

    def url_for(self, path: str) -> str:
        """`path` below the title on the current URL's appliance (absolute URIs stay)."""
        if urlsplit(path).scheme:
            return path
        return urljoin(base_of(self.urls[self.current]), path)

    async def _get_once(self, url: str, range_header: str | None) -> tuple[bytes, str | None]:
        headers = {"Range": range_header} if range_header else {}
        try:
            async with self.session.get(url, headers=headers, timeout=self.timeout) as resp:
                if resp.status not in (200, 206) or (range_header and resp.status != 206):
                    raise UpstreamStatus(f"{url} answered {resp.status}", status=resp.status)
                return await resp.read(), resp.headers.get("Content-Range")
        except TimeoutError:
            raise UpstreamTimeout(f"{url} did not answer in time") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"{url} failed: {exc.__class__.__name__}: {exc}") from None

    async def get(self, path: str, part: Part | None = None) -> tuple[bytes, Fetch]:
        """The bytes of `path` (below the title) from the current URL, failing over as needed."""
        started = time.monotonic()
        attempts = 0
        range_header = part.range_header if part else None
        for round_no in range(self.rounds):
            for _ in range(len(self.urls)):
                url = self.url_for(path)
                attempts += 1
                try:
                    body, content_range = await self._get_once(url, range_header)
                    digest = hashlib.sha256(body).hexdigest()
                    want = self.expected.get(path) if range_header is None else None
                    if want is not None and want != digest:
                        raise IntegrityError(f"{url} sent bytes whose sha256 is not the manifest's")
                    if part is not None and range_header is not None:
                        self._track(path, part, body, content_range, url)
                    server = urlsplit(url).netloc
                    elapsed = time.monotonic() - started
                    return body, Fetch(path, server, len(body), digest, elapsed, attempts)
                except (UpstreamError, IntegrityError) as exc:
                    self.errors.append(str(exc))
                    self.current = (self.current + 1) % len(self.urls)
                    self.failovers += 1
            if round_no + 1 < self.rounds:
                await asyncio.sleep(ROUND_BACKOFF * (round_no + 1))
                if self.refresh is not None:
                    try:
                        fresh = await self.refresh()
                    except Exception as exc:  # steering down: keep the old list
                        self.errors.append(f"refresh failed: {exc}")
                    else:
                        if fresh:
                            self.urls, self.current = list(fresh), 0
        raise UpstreamError(f"No URL delivered {path} after {attempts} attempts.")

    async def play(
        self,
        variant: int | str | None = None,
        *,
        pace: float = 0.0,
        on_fetch: Callable[[Fetch], None] | None = None,
    ) -> PlayReport:
        """Read the master playlist, one variant's playlist, init and every segment.

        `variant`: an index into the variants (highest bandwidth first), a rendition name
        (the directory of its playlist, e.g. ``360p``), or None for the highest. `pace`
        sleeps that fraction of each segment's duration between segments, so a test can
        play in (scaled) real time while something breaks underneath.
        """
        report = PlayReport()

        async def fetch(path: str, part: Part | None = None) -> bytes | None:
            try:
                body, record = await self.get(path, part)
            except UpstreamError as exc:
                report.failed.append(path)
                report.errors.append(str(exc))
                return None
            report.fetches.append(record)
            if on_fetch is not None:
                on_fetch(record)
            return body

        master_path = self.master_path
        master = await fetch(master_path)
        if master is None:
            return self._finish(report)
        chosen = choose_variant(parse_master(master.decode()), variant)
        media_path = resolve(master_path, chosen.uri)
        report.variant = posixpath.dirname(media_path) or media_path
        media_text = await fetch(media_path)
        if media_text is None:
            return self._finish(report)
        playlist: MediaPlaylist = parse_media(media_text.decode())
        if playlist.init is not None:
            await fetch(resolve(media_path, playlist.init.uri), playlist.init)
        for part, duration in zip(playlist.segments, playlist.durations, strict=True):
            await fetch(resolve(media_path, part.uri), part)
            if pace > 0:
                await asyncio.sleep(duration * pace)
        await self._check_ranges(report)
        return self._finish(report)

    def _track(self, path: str, part: Part, body: bytes, content_range: str | None,
               url: str) -> None:
        """A byte-range part must be exactly the bytes asked for (RFC 9110 §14.4); its bytes
        join the running sha256 of the whole file, checked against the manifest at the end."""
        assert part.start is not None and part.length is not None
        last = part.start + part.length - 1
        total = _complete_length(content_range, part.start, last)
        if total is None or len(body) != part.length:
            raise IntegrityError(
                f"{url} answered {part.range_header} with Content-Range {content_range!r} "
                f"and {len(body)} bytes")
        if path not in self.expected:
            return
        whole = self._whole.setdefault(path, _Whole(total))
        if whole.next == part.start and whole.total == total:
            whole.sha.update(body)
            whole.next += len(body)
        elif part.start + part.length > whole.next:
            whole.gap = True  # out of order: this file's ranges cannot be summed up

    async def _check_ranges(self, report: PlayReport) -> None:
        """Hash-check files fetched in byte-range parts: fetch what the parts left out (the
        tail after the last segment) and compare the whole file's sha256 with the manifest."""
        for path, whole in list(self._whole.items()):
            if whole.gap:
                report.errors.append(f"{path}: byte ranges out of order, sha256 not checked")
                continue
            if whole.next < whole.total:
                try:
                    await self.get(path, Part(path, whole.next, whole.total - whole.next))
                except UpstreamError as exc:
                    report.failed.append(path)
                    report.errors.append(str(exc))
                    continue
            if whole.sha.hexdigest() != self.expected[path]:
                report.failed.append(path)
                report.errors.append(
                    f"{path}: the byte ranges served do not add up to the manifest's sha256")
        self._whole.clear()

    def _finish(self, report: PlayReport) -> PlayReport:
        report.failovers = self.failovers
        report.errors = self.errors + report.errors
        return report


@dataclass
class _Whole:
    """The running sha256 of a file fetched as consecutive byte ranges."""

    total: int
    next: int = 0
    gap: bool = False
    sha: Any = field(default_factory=hashlib.sha256)


def _complete_length(content_range: str | None, first: int, last: int) -> int | None:
    """The complete length from `bytes first-last/N`, or None if the header says otherwise."""
    unit, _, rest = (content_range or "").partition(" ")
    span, _, total = rest.partition("/")
    if unit != "bytes" or span != f"{first}-{last}" or not total.isdigit():
        return None
    return int(total) if int(total) > last else None


def choose_variant(variants: list[Variant], which: int | str | None) -> Variant:
    """Pick a variant by index, by rendition directory name, or the highest by default."""
    if which is None:
        return variants[0]
    if isinstance(which, int):
        if not -len(variants) <= which < len(variants):
            raise ClientError(f"Variant index {which} is out of range; there are {len(variants)}.")
        return variants[which]
    for v in variants:
        if posixpath.dirname(v.uri) == which or v.uri == which:
            return v
    names = ", ".join(posixpath.dirname(v.uri) or v.uri for v in variants)
    raise ClientError(f"No rendition named {which!r}; the master playlist has {names}.")
