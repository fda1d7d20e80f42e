"""bench.live, smoke-sized: simulated players through a real edge fetch every segment, fail
no request, and the origin sees exactly one request per segment and per playlist version
however many players ask."""

from __future__ import annotations

import asyncio

import pytest

from bench.live.__main__ import exactly_one, run

pytestmark = pytest.mark.slow


def test_players_through_one_edge_cost_one_origin_request_per_segment() -> None:
    result = asyncio.run(run(players=25, seconds=6.0, seg=1.0))
    assert result["failures"] == 0 and result["missed"] == 0
    assert result["incomplete_players"] == 0
    assert result["segments_fetched"] >= 25 * 4
    assert result["origin_requests_per_segment_max"] == 1
    assert result["origin_requests_per_new_segment"].count(1) >= 4
    assert exactly_one(result), {k: v for k, v in result.items() if not k.endswith("_ms")}
    assert result["playlist_p99"] > 0 and result["behind_p50_s"] < 5
