"""Fill planning on the appliance, pure: from a fill manifest and what the cache holds,
which files to fetch, from where, in which order, and which titles to pin or unpin.

The control plane decides *what* an appliance should hold; this module only turns that
into work. It trusts nothing in the manifest that ends up in a file name or URL: a title
or file path that could escape the cache directory rejects the whole title.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from vcdn import peering
from vcdn.schemas import FileEntry, FillManifest, FillTitle
from vcdn.titles import is_valid_title

SourceKind = Literal["peer", "origin"]
_HEX: Final = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a file can come from: a peer appliance (cache only) or the origin."""

    kind: SourceKind
    base: str  # scheme://host:port, no trailing slash

    def url(self, title: str, path: str, token: str | None = None) -> str:
        """The origin's ``/v/...``; a peer's signed ``/s/{token}/...`` (its edge checks the
        token, so an unknown caller gets 403) or, without keys (labs), ``/v/...``."""
        if self.kind == "peer" and token:
            return self.base + peering.peer_target(token, title, path)
        return self.base + peering.origin_target(title, path)


@dataclass(frozen=True, slots=True)
class TitleWork:
    """One title of the manifest: the files still missing and the sources in order."""

    title: str
    score: float
    missing: tuple[FileEntry, ...]
    files: tuple[FileEntry, ...]
    sources: tuple[Source, ...]

    @property
    def missing_bytes(self) -> int:
        return sum(f.size for f in self.missing)

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass(frozen=True, slots=True)
class Plan:
    work: tuple[TitleWork, ...]  # most popular first, as the manifest lists them
    rejected: tuple[tuple[str, str], ...]  # (title, reason) for entries we refuse

    @property
    def missing_bytes(self) -> int:
        return sum(w.missing_bytes for w in self.work)

    @property
    def titles(self) -> frozenset[str]:
        return frozenset(w.title for w in self.work)


def safe_path(path: str) -> bool:
    """A relative path of plain segments: no '..', no '.', no absolute path, no backslash."""
    if not path or path.startswith("/") or "\\" in path or "\x00" in path or len(path) > 512:
        return False
    return all(seg not in ("", ".", "..") and not seg.startswith(".") for seg in path.split("/"))


def _entry_problem(entry: FileEntry) -> str | None:
    if not safe_path(entry.path):
        return f"file path {entry.path!r} is not a safe relative path"
    if entry.size < 0:
        return f"file {entry.path!r} has a negative size"
    if len(entry.sha256) != 64 or not set(entry.sha256.lower()) <= _HEX:
        return f"file {entry.path!r} has a malformed sha256"
    return None


def _base(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def sources_for(item: FillTitle, origin_url: str, self_url: str) -> tuple[Source, ...]:
    """Peers of the same site first (the manifest ranks them), then the origin."""
    me = _base(self_url)
    out: list[Source] = []
    for peer in item.peers:
        base = _base(peer)
        if base is not None and base != me and all(s.base != base for s in out):
            out.append(Source("peer", base))
    origin = _base(origin_url)
    if origin is not None:
        out.append(Source("origin", origin.rstrip("/") + urlsplit(origin_url).path.rstrip("/")))
    return tuple(out)


def plan(
    manifest: FillManifest,
    have: Callable[[str, FileEntry], bool],
    origin_url: str,
    self_url: str,
) -> Plan:
    """The work a manifest implies given what the cache already holds.

    `have(title, entry)` says whether the cache holds that file *as the manifest describes
    it*, so a republished title (same path, new bytes) is fetched again.
    """
    work: list[TitleWork] = []
    rejected: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in manifest.titles:
        if not is_valid_title(item.title):
            rejected.append((item.title, "title id is not valid"))
            continue
        if item.title in seen:
            continue
        seen.add(item.title)
        problems = [p for p in map(_entry_problem, item.files) if p]
        if problems:
            rejected.append((item.title, problems[0]))
            continue
        files = tuple({f.path: f for f in item.files}.values())
        missing = tuple(f for f in files if not have(item.title, f))
        work.append(
            TitleWork(
                title=item.title,
                score=item.score,
                missing=missing,
                files=files,
                sources=sources_for(item, origin_url, self_url),
            )
        )
    return Plan(tuple(work), tuple(rejected))


def to_unpin(pinned: Iterable[str], manifest_titles: Iterable[str]) -> frozenset[str]:
    """Titles pinned earlier that the manifest no longer lists: evictable when space is needed."""
    return frozenset(pinned) - frozenset(manifest_titles)
