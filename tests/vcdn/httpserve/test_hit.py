"""The hit planner's multi-range answers (`vcdn.httpserve.hit`): laid out from the
representation's prepared framing, they are the planner's answers to the byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcdn.httpserve.hit import Prepared, plan_hit
from vcdn.httpserve.plan import plan_response
from vcdn.httpserve.wire import StoredHead, head_prefix, head_tail

SIZE = 50_000
ETAG = '"v1"'
LM = 1_700_000_000.0
NOW = 1_800_000_000.0
TYPE = "video/mp4"
STORED = StoredHead.of((("Via", "1.1 test"),), "public, max-age=60")


class Obj:
    """A stored representation as the planner reads it."""

    size, etag, last_modified, content_type = SIZE, ETAG, LM, TYPE


def _planner(method: str, headers: dict[str, str], prepared: Prepared) -> tuple[bytes, object]:
    """The answer of the general planner, with the prepared boundary."""
    plan = plan_response(method, headers, size=SIZE, etag=ETAG, last_modified=LM,
                         content_type=TYPE, boundary=prepared.multipart.boundary)
    return head_prefix(plan, STORED) + head_tail(NOW, age=3.0), plan


specs = st.tuples(st.integers(0, SIZE + 500), st.integers(0, 3000)).map(
    lambda t: f"{t[0]}-{t[0] + t[1]}"
)


@given(st.lists(specs, min_size=2, max_size=6), st.sampled_from(["GET", "HEAD"]))
def test_multi_range_answers_are_the_planners(parts: list[str], method: str) -> None:
    """Any multi-spec Range: the same head bytes and the same plan (status, fields,
    spans, part headers, length) as the planner's, whether the specs stay several parts,
    merge into one, or select nothing (416)."""
    prepared = Prepared.of(Obj(), STORED)
    headers = {"Range": "bytes=" + ",".join(parts)}
    assert plan_hit(method, headers, Obj(), prepared, NOW, age=3.0) == _planner(
        method, headers, prepared
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Range": "bytes=0-9,100-109", "If-Range": '"other"'}, 200),
        ({"Range": "bytes=0-9,100-109", "If-None-Match": ETAG}, 304),
        ({"Range": "bytes=0-9,100-109", "If-Match": '"other"'}, 412),
        ({"Range": "bytes=0-9,100-109", "If-Modified-Since": "Sun, 01 Jan 2040 00:00:00 GMT"},
         304),
        ({"Range": "bytes=0-9,100-109", "If-Unmodified-Since": "Sun, 01 Jan 2000 00:00:00 GMT"},
         412),
        ({"Range": "bytes=0-9,100-109", "If-Range": ETAG}, 206),
        ({"Range": "bytes=0-9,10-19"}, 206),  # merged into one range: no multipart
        ({"Range": "bytes=60000-,70000-"}, 416),
        ({"Range": "bytes=0-9,x"}, 200),  # malformed: ignored
    ],
)
def test_preconditions_and_odd_sets_go_to_the_planner(headers: dict[str, str],
                                                      status: int) -> None:
    prepared = Prepared.of(Obj(), STORED)
    head, plan = plan_hit("GET", headers, Obj(), prepared, NOW, age=3.0)
    assert plan.status == status
    assert (head, plan) == _planner("GET", headers, prepared)


def test_each_version_has_its_own_boundary() -> None:
    assert Prepared.of(Obj(), STORED).multipart.boundary != Prepared.of(
        Obj(), STORED
    ).multipart.boundary
