"""Versioned schema migrations, one list per dialect, applied in order at start.

A migration is never edited once released: a change is a new, higher version. Each store
records what it applied in ``schema_migrations`` and applies the rest inside one
transaction (PostgreSQL also takes an advisory lock, so two servers starting at once do
not race).
"""

from __future__ import annotations

from typing import Final

from origin.control.migrations_base import Migration
from origin.control.migrations_keys import TITLE_KEYS
from origin.control.migrations_replicas import FILL_PLANS, POPULARITY_STAMP
from origin.control.migrations_tokens import TOKEN_EPOCH

_V1_TABLES: Final = """
CREATE TABLE titles (
    id TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,
    duration {real} NOT NULL,
    format TEXT NOT NULL,
    live {bool} NOT NULL,
    version {int} NOT NULL,
    renditions {int} NOT NULL,
    files {int} NOT NULL,
    total_bytes {int} NOT NULL,
    registered_at {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE TABLE appliances (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    public_url TEXT NOT NULL,
    capacity_bytes {int} NOT NULL,
    asn {int} NOT NULL,
    lat {real} NOT NULL,
    lon {real} NOT NULL,
    prefixes TEXT NOT NULL,
    registered_at {real} NOT NULL,
    updated_at {real} NOT NULL,
    last_heartbeat {real},
    reported_state TEXT,
    requests_per_s {real} NOT NULL DEFAULT 0,
    bytes_per_s {real} NOT NULL DEFAULT 0,
    connections {int} NOT NULL DEFAULT 0,
    free_bytes {int} NOT NULL DEFAULT 0,
    used_bytes {int} NOT NULL DEFAULT 0,
    bytes_served {int} NOT NULL DEFAULT 0,
    hit_ratio {real} NOT NULL DEFAULT 0
);
CREATE INDEX appliances_by_site ON appliances (site);
CREATE TABLE heartbeats (
    appliance_id TEXT NOT NULL,
    at {real} NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX heartbeats_by_appliance ON heartbeats (appliance_id, at);
CREATE INDEX heartbeats_by_time ON heartbeats (at);
CREATE TABLE popularity (
    title TEXT NOT NULL,
    site TEXT NOT NULL,
    score {real} NOT NULL,
    updated_at {real} NOT NULL,
    PRIMARY KEY (title, site)
);
CREATE INDEX popularity_by_site ON popularity (site);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    subject TEXT,
    label TEXT NOT NULL DEFAULT '',
    created_at {real} NOT NULL
);
"""

# Enrolments: the operator's word on who an appliance is (site) and which client prefixes
# it may claim. Additive: nothing older changes.
_V2_ENROLLMENTS: Final = """
CREATE TABLE enrollments (
    id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    prefixes TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE INDEX tokens_by_subject ON tokens (subject);
"""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "titles, appliances, heartbeats, popularity, tokens",
        _V1_TABLES.format(real="REAL", int="INTEGER", bool="INTEGER"),
        _V1_TABLES.format(real="DOUBLE PRECISION", int="BIGINT", bool="BOOLEAN"),
    ),
    Migration(
        2,
        "enrollments; tokens by subject",
        _V2_ENROLLMENTS.format(real="REAL"),
        _V2_ENROLLMENTS.format(real="DOUBLE PRECISION"),
    ),
    FILL_PLANS,
    POPULARITY_STAMP,
    TITLE_KEYS,
    TOKEN_EPOCH,
    # The HTTPS URL an appliance serves players at, beside its plain `public_url`
    # (which peers fill from); '' for an appliance without TLS. Additive.
    Migration(
        55,
        "appliances: tls_url",
        "ALTER TABLE appliances ADD COLUMN tls_url TEXT NOT NULL DEFAULT '';",
        "ALTER TABLE appliances ADD COLUMN tls_url TEXT NOT NULL DEFAULT '';",
    ),
)

LATEST: Final = max(m.version for m in MIGRATIONS)

MIGRATIONS_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at {real} NOT NULL
)
"""


def pending(applied: set[int]) -> list[Migration]:
    """Migrations not yet applied, in order."""
    return [m for m in MIGRATIONS if m.version not in applied]
