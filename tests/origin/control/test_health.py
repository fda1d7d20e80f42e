"""Computed appliance state, pure."""

from __future__ import annotations

import pytest

from origin.control.health import Liveness, state

LIVE = Liveness(interval=10.0, stale_after_beats=3, down_after_beats=30)


@pytest.mark.parametrize(
    ("last", "reported", "now", "expected"),
    [
        (None, None, 100.0, "down"),  # registered, never beat
        (100.0, "healthy", 100.0, "healthy"),
        (100.0, "healthy", 130.0, "healthy"),  # exactly three intervals: not yet missed
        (100.0, "healthy", 130.1, "stale"),
        (100.0, "draining", 105.0, "draining"),
        (100.0, "draining", 131.0, "stale"),  # silence beats what it said
        (100.0, "unhealthy", 100.0, "down"),
        (100.0, "healthy", 400.1, "down"),  # long gone
        (100.0, "healthy", 50.0, "healthy"),  # the clock stepped back
    ],
)
def test_state(last: float | None, reported: str | None, now: float, expected: str) -> None:
    assert state(last, reported, now, LIVE) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval": 0},
        {"interval": 10, "stale_after_beats": 0},
        {"interval": 10, "stale_after_beats": 5, "down_after_beats": 4},
    ],
)
def test_nonsensical_liveness_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Liveness(**kwargs)
