"""Popularity, pure: per-title, per-site scores that decay exponentially with time.

Each heartbeat adds the requests an appliance saw per title since its last beat to its
site's score for that title; between additions a score halves every `half_life` seconds,
so yesterday's hit fades instead of pinning the fill plan forever. A score is stored with
the time it was last brought up to date and decayed on read, which keeps a heartbeat a
single upsert per title (the stores run the same formula in SQL: ``exp(-ln2·dt/h)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

LN2: Final = math.log(2.0)


@dataclass(frozen=True, slots=True)
class Score:
    """A title's score in one site, as of `updated_at` (Unix seconds)."""

    title: str
    site: str
    score: float
    updated_at: float


def decay(score: float, since: float, now: float, half_life: float) -> float:
    """`score` measured at `since`, as seen at `now`; never grows, even if clocks step back."""
    if half_life <= 0:
        raise ValueError("half_life must be positive")
    dt = max(0.0, now - since)
    return score * math.exp(-LN2 * dt / half_life)


def add(old: Score | None, count: float, now: float, half_life: float) -> float:
    """The new score after `count` more requests at `now`."""
    base = 0.0 if old is None else decay(old.score, old.updated_at, now, half_life)
    return base + count


def current(scores: Iterable[Score], now: float, half_life: float) -> list[Score]:
    """Every score decayed to `now`, highest first (ties by title for stable output)."""
    out = [
        Score(s.title, s.site, decay(s.score, s.updated_at, now, half_life), now) for s in scores
    ]
    out.sort(key=lambda s: (-s.score, s.title, s.site))
    return out


def by_site(scores: Iterable[Score]) -> dict[str, dict[str, float]]:
    """{site: {title: score}}: the shape the fill planner reads."""
    table: dict[str, dict[str, float]] = {}
    for s in scores:
        table.setdefault(s.site, {})[s.title] = s.score
    return table


def global_scores(table: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """{title: sum over sites}: what a site with no history of its own falls back on."""
    total: dict[str, float] = {}
    for per_title in table.values():
        for title, value in per_title.items():
            total[title] = total.get(title, 0.0) + value
    return total
