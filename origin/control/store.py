"""The store interface: one async Protocol, two implementations (SQLite, PostgreSQL).

Handlers see only this interface; `open_store(url)` picks the implementation from the
URL. Stores translate their driver's exceptions into `StoreError` at this boundary, and
hand back plain frozen records, never driver rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol
from urllib.parse import urlsplit

from origin.control.auth import Principal
from origin.control.popularity import Score, decay
from origin.control.store_plans import Lease, StoredPlan
from vcdn.errors import ConfigError
from vcdn.schemas import (
    ApplianceState,
    ApplianceView,
    FileEntry,
    HealthState,
    Heartbeat,
    Load,
    Registration,
    Rendition,
    TitleManifest,
)

DEFAULT_DB: Final = "sqlite:///data/control.db"


@dataclass(frozen=True, slots=True)
class ContentKey:
    """One content key of an encrypted title: `kid` and `key` are 32 lowercase hex digits.

    `repr` leaves the key out, so that a record in a log line or a traceback never
    carries it."""

    title: str
    kid: str
    scheme: str  # "aes-128" or "cenc"
    key: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class TitleSummary:
    """One item of `GET /titles`: enough to list, without the file list."""

    title: str
    duration: float
    format: str
    live: bool
    version: int
    renditions: int
    files: int
    total_bytes: int
    registered_at: float
    updated_at: float


class ApplianceRecord(NamedTuple):
    """An appliance as stored: its registration and what its last heartbeat said.

    A flat tuple in the column order of the stores' SELECT, because steering lists every
    appliance every 2 s: building three frozen dataclasses per row cost more than the
    query. `registration`, `load` and `view()` build the schema objects when needed.
    """

    id: str
    site: str
    public_url: str
    capacity_bytes: int
    asn: int
    lat: float
    lon: float
    prefixes: list[str]
    registered_at: float
    last_heartbeat: float | None = None
    reported_state: HealthState | None = None
    requests_per_s: float = 0.0
    bytes_per_s: float = 0.0
    connections: int = 0
    free_bytes: int = 0
    used_bytes: int = 0
    bytes_served: int = 0
    hit_ratio: float = 0.0
    tls_url: str = ""

    @classmethod
    def registered(cls, r: Registration, registered_at: float) -> ApplianceRecord:
        """A record for a registration that has not beaten yet."""
        return cls(
            r.id,
            r.site,
            r.public_url,
            r.capacity_bytes,
            r.asn,
            r.lat,
            r.lon,
            list(r.prefixes),
            registered_at,
            tls_url=r.tls_url,
        )

    @property
    def registration(self) -> Registration:
        return Registration(
            id=self.id,
            site=self.site,
            public_url=self.public_url,
            capacity_bytes=self.capacity_bytes,
            asn=self.asn,
            lat=self.lat,
            lon=self.lon,
            prefixes=list(self.prefixes),
            tls_url=self.tls_url,
        )

    @property
    def load(self) -> Load:
        return Load(self.requests_per_s, self.bytes_per_s, self.connections)

    def view_json(self, state: ApplianceState) -> dict[str, Any]:
        """`encode(self.view(state))`, built directly (a test checks they are equal)."""
        return {
            "id": self.id,
            "site": self.site,
            "public_url": self.public_url,
            "capacity_bytes": self.capacity_bytes,
            "asn": self.asn,
            "lat": self.lat,
            "lon": self.lon,
            "prefixes": self.prefixes,
            "state": state,
            "last_heartbeat": self.last_heartbeat,
            "load": {
                "requests_per_s": self.requests_per_s,
                "bytes_per_s": self.bytes_per_s,
                "connections": self.connections,
            },
            "free_bytes": self.free_bytes,
            "used_bytes": self.used_bytes,
            "bytes_served": self.bytes_served,
            "hit_ratio": self.hit_ratio,
            "tls_url": self.tls_url,
        }

    def view(self, state: ApplianceState) -> ApplianceView:
        return ApplianceView(
            id=self.id,
            site=self.site,
            public_url=self.public_url,
            capacity_bytes=self.capacity_bytes,
            asn=self.asn,
            lat=self.lat,
            lon=self.lon,
            prefixes=list(self.prefixes),
            state=state,
            last_heartbeat=self.last_heartbeat,
            load=self.load,
            free_bytes=self.free_bytes,
            used_bytes=self.used_bytes,
            bytes_served=self.bytes_served,
            hit_ratio=self.hit_ratio,
            tls_url=self.tls_url,
        )


def appliance_from_row(row: Sequence[Any]) -> ApplianceRecord:
    """A record from the 19 columns of `APPLIANCE_COLUMNS` (prefixes as JSON text)."""
    return ApplianceRecord(*row[:7], json.loads(row[7]), *row[8:19])


APPLIANCE_COLUMNS: Final = (
    "id, site, public_url, capacity_bytes, asn, lat, lon, prefixes, registered_at, "
    "last_heartbeat, reported_state, requests_per_s, bytes_per_s, connections, "
    "free_bytes, used_bytes, bytes_served, hit_ratio, tls_url"
)


@dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat as received: who, when, what, and its JSON text for the history
    (None when the history samples this beat out)."""

    appliance: str
    at: float
    heartbeat: Heartbeat
    body: str | None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    hash: str
    role: str
    subject: str | None
    label: str
    created_at: float


@dataclass(frozen=True, slots=True)
class EnrollmentRecord:
    """An enrolled appliance: its operator-set site and approved client prefixes."""

    id: str
    site: str
    prefixes: list[str]
    label: str
    created_at: float
    updated_at: float


ENROLLMENT_COLUMNS: Final = "id, site, prefixes, label, created_at, updated_at"


def enrollment_from_row(row: Sequence[Any]) -> EnrollmentRecord:
    return EnrollmentRecord(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5])


@dataclass(frozen=True, slots=True)
class HeartbeatRecord:
    at: float
    heartbeat: dict[str, Any]


class Store(Protocol):
    """What the control API needs from a database. Every method may raise StoreError."""

    kind: str

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def put_title(self, manifest: TitleManifest, now: float) -> bool:
        """Insert or replace; True if the title is new."""
        ...

    async def get_title(self, title: str) -> str | None:
        """The manifest as the JSON text it was stored as."""
        ...

    async def list_titles(self) -> list[TitleSummary]: ...

    async def catalog(self) -> list[TitleManifest]:
        """Every title with its files, for fill planning."""
        ...

    async def catalog_stamp(self) -> tuple[int, float]:
        """(count, last update): changes whenever the catalog does, cheap to ask."""
        ...

    async def put_appliance(
        self, registration: Registration, now: float
    ) -> tuple[ApplianceRecord, bool]:
        """Insert or update (idempotent); the record and True if it is new."""
        ...

    async def get_appliance(self, appliance: str) -> ApplianceRecord | None: ...

    async def delete_appliance(self, appliance: str) -> bool:
        """Forget an appliance and its heartbeat history; False if it was unknown."""
        ...

    async def list_appliances(
        self, after: str | None = None, limit: int | None = None
    ) -> list[ApplianceRecord]:
        """Appliances in id order: those whose id sorts after `after`, at most `limit`
        (a page of `GET /appliances`; None: from the first, all)."""
        ...

    async def site_appliances(self, site: str) -> list[ApplianceRecord]:
        """The appliances of one site, in id order: what one appliance's fill plan
        reads (by the site index, not the whole fleet)."""
        ...

    async def record_heartbeats(
        self, beats: Sequence[Beat], half_life: float, *, keep_rows: int | None = None
    ) -> int:
        """Store a batch of beats in one transaction: each appliance's latest state, the
        history rows (at most `keep_rows` per appliance, oldest dropped) and the sites'
        popularity of titles in the catalog (others are ignored). Beats of unknown
        appliances are skipped; returns how many were stored."""
        ...

    async def heartbeats(self, appliance: str, since: float, limit: int) -> list[HeartbeatRecord]:
        """Stored beats at or after `since`, oldest first."""
        ...

    async def prune_heartbeats(self, before: float) -> int: ...

    async def scores(self, site: str | None = None) -> list[Score]:
        """Popularity rows as stored (not yet decayed to now)."""
        ...

    async def title_totals(
        self, now: float, half_life: float, title: str | None = None
    ) -> dict[str, float]:
        """{title: score summed over sites, decayed to `now`}, computed in the database."""
        ...

    async def add_token(
        self, token_hash: str, principal: Principal, label: str, now: float
    ) -> None: ...

    async def principal(self, token_hash: str) -> Principal | None: ...

    async def token_epoch(self) -> int:
        """A counter that moves whenever any token is revoked or changed, by anyone
        sharing this database (triggers advance it): cached token decisions made before
        it moved may be stale."""
        ...

    async def list_tokens(self) -> list[TokenInfo]:
        """Every stored token (its hash, never the token), oldest first."""
        ...

    async def delete_token(self, token_hash: str) -> bool: ...

    async def revoke_subject(self, subject: str) -> int:
        """Delete every appliance token bound to `subject`; how many there were."""
        ...

    async def put_enrollment(self, enrollment: EnrollmentRecord) -> bool:
        """Insert or update (keeping `created_at`); True if it is new."""
        ...

    async def put_key(self, key: ContentKey, now: float) -> bool:
        """Store a title's content key (key service); True if it is new. Storing the same
        (title, kid) again replaces the key: the packager's word is the latest."""
        ...

    async def get_key(self, title: str, kid: str) -> ContentKey | None: ...

    async def get_enrollment(self, appliance: str) -> EnrollmentRecord | None: ...

    async def list_enrollments(self) -> list[EnrollmentRecord]: ...

    # --- shared decision state (origin.control.store_plans): what replicas agree on ---

    def jobs_lease(self) -> Lease:
        """A new lease on the periodic jobs (one holder per database and schema)."""
        ...

    async def plan_epoch(self) -> int: ...

    async def fill_plans(self, appliances: Sequence[str]) -> dict[str, StoredPlan]: ...

    async def popularity_stamp(self) -> float:
        """The latest popularity update (0 if none): moves when demand does."""
        ...

    async def offer_plan(self, plan: StoredPlan) -> StoredPlan:
        """Store `plan` unless one of its epoch and inputs is stored; what is stored."""
        ...

    async def advance_plans(self, epoch: int, plans: Sequence[StoredPlan], now: float) -> bool:
        """Epoch `epoch` → `epoch + 1` with `plans`, in one transaction; False (nothing
        written) if another instance advanced it first."""
        ...

    async def prune_scores(self, now: float, half_life: float, floor: float) -> int:
        """Forget popularity decayed below `floor`; how many rows went."""
        ...


# --- helpers shared by both implementations ---


def manifest_json(manifest: TitleManifest) -> str:
    from vcdn.schemas import encode

    return json.dumps(encode(manifest), separators=(",", ":"))


def manifest_from_trusted(text: str) -> TitleManifest:
    """Rebuild a manifest we validated on the way in, without re-checking every field."""
    d = json.loads(text)
    d["renditions"] = [Rendition(**r) for r in d["renditions"]]
    d["files"] = [FileEntry(**f) for f in d["files"]]
    return TitleManifest(**d)


def heartbeat_json(heartbeat: Heartbeat) -> str:
    from vcdn.schemas import encode

    return json.dumps(encode(heartbeat), separators=(",", ":"))


def latest_per_appliance(beats: Sequence[Beat]) -> list[Beat]:
    """Each appliance's newest beat of a batch, ordered by appliance id (the lock order)."""
    latest: dict[str, Beat] = {}
    for b in beats:
        seen = latest.get(b.appliance)
        if seen is None or b.at >= seen.at:
            latest[b.appliance] = b
    return [latest[k] for k in sorted(latest)]


def appliance_updates(beats: Sequence[Beat]) -> list[tuple[object, ...]]:
    """The appliance-row update of a batch, one per appliance in lock order, both stores'
    parameter order: last_heartbeat, reported_state, requests_per_s, bytes_per_s,
    connections, free_bytes, used_bytes, bytes_served, hit_ratio, then the id."""
    return [
        (
            b.at,
            h.state,
            h.load.requests_per_s,
            h.load.bytes_per_s,
            h.load.connections,
            h.free_bytes,
            h.used_bytes,
            h.bytes_served,
            h.hit_ratio,
            b.appliance,
        )
        for b in latest_per_appliance(beats)
        for h in (b.heartbeat,)
    ]


def popularity_deltas(
    beats: Sequence[Beat], sites: Mapping[str, str], half_life: float
) -> list[tuple[str, str, float, float]]:
    """(title, site, requests, as of) per title and site of a batch, ordered by key.

    A batch's counts for one title and site are summed (decayed to the newest of them) so
    that each popularity row is written once per batch, and always in the same order:
    concurrent batches on PostgreSQL then lock rows in one order and cannot deadlock.
    """
    acc: dict[tuple[str, str], tuple[float, float]] = {}
    for b in beats:
        site = sites.get(b.appliance)
        if site is None:
            continue
        for title, count in b.heartbeat.title_requests.items():
            if count <= 0:
                continue
            key = (title, site)
            prev = acc.get(key)
            if prev is None:
                acc[key] = (float(count), b.at)
                continue
            at = max(prev[1], b.at)
            acc[key] = (
                decay(prev[0], prev[1], at, half_life) + decay(float(count), b.at, at, half_life),
                at,
            )
    return [(t, s, score, at) for (t, s), (score, at) in sorted(acc.items())]


async def open_store(url: str) -> Store:
    """Open (and migrate) the store named by `url`: sqlite:///PATH or postgresql://..."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from origin.control.store_sqlite import SqliteStore

        return await SqliteStore.open(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        from origin.control.store_postgres import PostgresStore

        return await PostgresStore.open(url)
    raise ConfigError(
        f"Database URL {redact(url)!r} is not supported; use sqlite:///PATH or postgresql://..."
    )


def sqlite_path(url: str) -> str:
    """``sqlite:///data/x.db`` → ``data/x.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``."""
    prefix = "sqlite:///"
    if not url.lower().startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(
            f"SQLite URLs look like sqlite:///PATH (relative) or sqlite:////PATH, not {url!r}"
        )
    return url[len(prefix) :]


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
