"""Schema for control replicas: the fill plan lives in the database, not in a process.

`fill_plans` holds the manifest each appliance was last given (the next plan's start: its
stickiness and smoothing memory), the plan epoch it belongs to and a digest of the inputs
it was made from, so that every replica answers an appliance with the same manifest.
`plan_epoch` is one row: the current epoch, advanced by whichever replica holds the jobs
lock when it replans every site.
"""

from __future__ import annotations

from typing import Final

from origin.control.migrations_base import Migration

_FILL_PLANS: Final = """
CREATE TABLE fill_plans (
    appliance_id TEXT PRIMARY KEY,
    epoch {int} NOT NULL,
    inputs TEXT NOT NULL,
    generated_at {real} NOT NULL,
    manifest TEXT NOT NULL
);
CREATE TABLE plan_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch {int} NOT NULL,
    planned_at {real} NOT NULL
);
INSERT INTO plan_epoch VALUES (1, 0, 0);
"""

FILL_PLANS: Final = Migration(
    20,
    "fill plans and their epoch, shared by control replicas",
    _FILL_PLANS.format(real="REAL", int="INTEGER"),
    _FILL_PLANS.format(real="DOUBLE PRECISION", int="BIGINT"),
)

# What a fill plan depends on includes "has popularity moved since": max(updated_at),
# which this index answers without reading the table.
POPULARITY_STAMP: Final = Migration(
    21,
    "index popularity by update time (the plans' popularity stamp)",
    "CREATE INDEX popularity_by_update ON popularity (updated_at);",
    "CREATE INDEX popularity_by_update ON popularity (updated_at);",
)
