"""Popularity prediction, pure: tomorrow's demand per site and title.

Two signals. History: request counts that decay exponentially (a score halves every
`half_life` seconds), so the recent past predicts the near future and last month's hit
fades; a site with little history borrows a small share of the other sites' scores
(`global_weight`). Calendar: a title with a `release_at` in its metadata has no history
before its premiere, yet it must be on the appliances by then, because its first evening
is its busiest. Inside `ReleaseBoost.lead` seconds before the premiere a title is predicted
as popular as the site's `ReleaseBoost.rank`-th title today, and after the premiere that
boost halves every `ReleaseBoost.fade` seconds while the title's own counts take over
(the prediction is the larger of the two).

Scores are relative (counts, not rates): the planner only compares them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from vcdn.errors import ClientError
from vcdn.schemas import TitleManifest

LN2: Final = math.log(2.0)
HOUR: Final = 3600.0
DAY: Final = 86400.0
GLOBAL_WEIGHT: Final = 0.1

Popularity = Mapping[str, Mapping[str, float]]  # {site: {title: score}}


@dataclass(frozen=True, slots=True)
class ReleaseBoost:
    """How a premiere is predicted before it has any history."""

    lead: float = 36 * HOUR  # fill this long before the premiere (covers one fill window)
    rank: int = 10  # a premiere is predicted as popular as the site's 10th title
    fade: float = 2 * DAY  # the boost's half-life after the premiere


def decay(score: float, since: float, now: float, half_life: float) -> float:
    """`score` measured at `since`, seen at `now`: ``score·2^(-(now-since)/half_life)``.

    The control store runs the same formula (`origin.control.popularity.decay`); a clock
    stepping back never makes a score grow.
    """
    if half_life <= 0:
        raise ValueError("half_life must be positive")
    return score * math.exp(-LN2 * max(0.0, now - since) / half_life)


class DecayedCounts:
    """In-memory decayed request counts per (site, title), for planners without a store
    (the simulator, tests). Each entry keeps its score and when it was last brought up to
    date, and is decayed on read, so adding is O(1) per title."""

    __slots__ = ("_scores", "half_life")

    def __init__(self, half_life: float = DAY) -> None:
        if half_life <= 0:
            raise ValueError("half_life must be positive")
        self.half_life = half_life
        self._scores: dict[tuple[str, str], tuple[float, float]] = {}

    def add(self, site: str, title: str, count: float, now: float) -> None:
        old = self._scores.get((site, title))
        base = 0.0 if old is None else decay(old[0], old[1], now, self.half_life)
        self._scores[(site, title)] = (base + count, now)

    def table(self, now: float) -> dict[str, dict[str, float]]:
        """{site: {title: score at `now`}}: the shape `predict` and the planner read."""
        out: dict[str, dict[str, float]] = {}
        for (site, title), (score, since) in self._scores.items():
            out.setdefault(site, {})[title] = decay(score, since, now, self.half_life)
        return out


def parse_release(text: str | None, title: str = "") -> float | None:
    """`release_at` (ISO 8601; no offset means UTC) as Unix seconds, or None."""
    if text is None or text == "":
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ClientError(
            f"Title {title!r} has release_at {text!r}, which is not an ISO 8601 time "
            "such as 2026-11-21T18:00:00Z."
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def release_times(catalog: Iterable[TitleManifest]) -> dict[str, float]:
    """{title: premiere time} for the titles that have a valid `release_at`.

    A malformed value was refused when the title was registered; if one slips through it
    is ignored here rather than stopping every appliance's plan.
    """
    out: dict[str, float] = {}
    for m in catalog:
        try:
            when = parse_release(m.release_at, m.title)
        except ClientError:
            continue
        if when is not None:
            out[m.title] = when
    return out


def global_scores(popularity: Popularity) -> dict[str, float]:
    """{title: sum over sites}."""
    total: dict[str, float] = {}
    for per_title in popularity.values():
        for title, value in per_title.items():
            total[title] = total.get(title, 0.0) + value
    return total


def boost_at(release: float, now: float, reference: float, boost: ReleaseBoost) -> float:
    """The calendar prediction of a title premiering at `release`, seen at `now`."""
    if now < release:
        return reference if release - now <= boost.lead else 0.0
    return reference * math.exp(-LN2 * (now - release) / boost.fade)


def predict_site(
    own: Mapping[str, float],
    global_table: Mapping[str, float],
    releases: Mapping[str, float],
    now: float,
    *,
    boost: ReleaseBoost = ReleaseBoost(),
    global_weight: float = GLOBAL_WEIGHT,
) -> dict[str, float]:
    """{title: predicted demand} at one site; titles predicted at 0 are left out."""
    base = {t: own.get(t, 0.0) + global_weight * g for t, g in global_table.items()}
    for t, v in own.items():
        base.setdefault(t, v)
    ranked = sorted((v for v in base.values() if v > 0.0), reverse=True)
    if ranked:
        reference = ranked[min(len(ranked), max(1, boost.rank)) - 1]
    else:
        reference = 1.0  # a new site with no history at all: premieres still come first
    out: dict[str, float] = {}
    for title, value in base.items():
        release = releases.get(title)
        if release is not None and now < release - boost.lead:
            continue  # announced but far off: not worth disk yet
        if value > 0.0:
            out[title] = value
    for title, release in releases.items():
        b = boost_at(release, now, reference, boost)
        if b > out.get(title, 0.0):
            out[title] = b
    return out


def predict(
    popularity: Popularity,
    catalog: Iterable[TitleManifest],
    sites: Iterable[str],
    now: float,
    *,
    boost: ReleaseBoost = ReleaseBoost(),
    global_weight: float = GLOBAL_WEIGHT,
    global_table: Mapping[str, float] | None = None,
) -> dict[str, dict[str, float]]:
    """{site: {title: predicted demand}} for each of `sites`.

    `global_table` is {title: score summed over all sites}; without it, it is summed from
    `popularity` (a store can pass its own total instead of every site's scores).
    """
    table = global_scores(popularity) if global_table is None else global_table
    releases = release_times(catalog)
    return {
        site: predict_site(
            popularity.get(site, {}),
            table,
            releases,
            now,
            boost=boost,
            global_weight=global_weight,
        )
        for site in sites
    }
