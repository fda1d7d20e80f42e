"""The hit planner's multi-range answers (`vcdn.httpserve.hit`): laid out from the
representation's prepared framing, they are the planner's answers to the byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import byteranges
from vcdn.httpserve.hit import MULTIPART_READ_MAX, Large, Prepared, deliver, file_opener, plan_hit
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


def test_a_small_multipart_body_from_disk_goes_out_whole(tmp_path: Path) -> None:
    """Read whole and joined to its head: the parts split back to the file's bytes with
    the standard library's MIME parser, and the length is the promised one."""
    data = os.urandom(SIZE)
    path = tmp_path / "obj"
    path.write_bytes(data)
    prepared = Prepared.of(Obj(), STORED)
    head, plan = plan_hit("GET", {"Range": "bytes=40000-40999,5000-21383"}, Obj(), prepared,
                          NOW)
    answer = deliver(head, plan, None, file_opener(str(path)))
    assert isinstance(answer, bytes) and answer.startswith(head)
    body = answer[len(head):]
    assert len(body) == plan.content_length
    assert f"Content-Length: {len(body)}\r\n".encode() in head
    ctype = plan.header("Content-Type")
    assert ctype == f"multipart/byteranges; boundary={prepared.multipart.boundary}"
    parts = byteranges.split(ctype, body)
    assert [p for _, p in parts] == [data[40000:41000], data[5000:21384]]
    assert [h["content-range"] for h, _ in parts] == [
        f"bytes 40000-40999/{SIZE}", f"bytes 5000-21383/{SIZE}"
    ]
    assert {h["content-type"] for h, _ in parts} == {TYPE}


def test_a_large_multipart_body_is_sent_from_its_file(tmp_path: Path) -> None:
    size = 2 * MULTIPART_READ_MAX

    class Big(Obj):
        pass

    Big.size = size
    path = tmp_path / "big"
    path.write_bytes(os.urandom(size))
    prepared = Prepared.of(Big(), STORED)
    head, plan = plan_hit("GET", {"Range": f"bytes=0-9,20-{size - 1}"}, Big(), prepared, NOW)
    assert isinstance(deliver(head, plan, None, file_opener(str(path))), Large)


def test_a_file_shorter_than_planned_is_not_answered(tmp_path: Path) -> None:
    path = tmp_path / "short"
    path.write_bytes(b"x" * 30_000)
    prepared = Prepared.of(Obj(), STORED)
    head, plan = plan_hit("GET", {"Range": "bytes=0-9,40000-40009"}, Obj(), prepared, NOW)
    assert deliver(head, plan, None, file_opener(str(path))) is None


def test_each_version_has_its_own_boundary() -> None:
    assert Prepared.of(Obj(), STORED).multipart.boundary != Prepared.of(
        Obj(), STORED
    ).multipart.boundary
