"""The pure response planner: RFC 9110 §13.2.2 precedence, Range outcomes, properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import byteranges
from vcdn.httpserve.plan import plan_response

SIZE = 1000
ETAG = '"v1"'
LM = 1_700_000_000.5  # Tue, 14 Nov 2023 22:13:20 GMT (sub-second part ignored)
LM_TEXT = "Tue, 14 Nov 2023 22:13:20 GMT"
OLDER = "Mon, 13 Nov 2023 22:13:20 GMT"


def plan(headers: dict[str, str], method: str = "GET", **kw):
    args = {"size": SIZE, "etag": ETAG, "last_modified": LM, "content_type": "video/mp4"} | kw
    return plan_response(method, headers, **args)


@pytest.mark.parametrize(
    ("headers", "method", "status"),
    [
        ({}, "GET", 200),
        ({"If-Match": '"x"', "If-None-Match": ETAG}, "GET", 412),  # step 1 before step 3
        ({"If-Match": ETAG, "If-Unmodified-Since": OLDER}, "GET", 200),  # IUS ignored with IM
        ({"If-Unmodified-Since": OLDER, "If-None-Match": ETAG}, "GET", 412),
        ({"If-None-Match": ETAG, "If-Modified-Since": OLDER}, "GET", 304),
        ({"If-None-Match": '"x"', "If-Modified-Since": LM_TEXT}, "GET", 200),  # IMS ignored
        ({"If-None-Match": ETAG}, "DELETE", 412),  # §13.1.2: not GET/HEAD → 412
        ({"If-Modified-Since": LM_TEXT}, "POST", 200),  # IMS only for GET/HEAD
        ({"if-none-match": ETAG}, "GET", 304),  # lower-case keys work with plain dicts
        ({"If-None-Match": ETAG, "Range": "bytes=0-1"}, "GET", 304),
        ({"Range": "bytes=0-1"}, "POST", 200),  # Range is defined for GET (and mirrored by HEAD)
        ({"Range": "bytes=0-1", "If-Range": OLDER}, "GET", 200),
        ({"Range": "bytes=0-1", "If-Range": LM_TEXT}, "GET", 206),
        ({"Range": "bytes=0-1", "If-Range": "garbage"}, "GET", 200),
        ({"If-Range": ETAG}, "GET", 200),  # If-Range without Range does nothing
    ],
)
def test_precondition_precedence(headers: dict[str, str], method: str, status: int) -> None:
    assert plan(headers, method).status == status


def test_without_validators_date_conditions_are_ignored() -> None:
    """No Last-Modified: If-Modified-Since/If-Unmodified-Since cannot be evaluated (§13.1.3-4)."""
    p = plan({"If-Modified-Since": LM_TEXT, "If-Unmodified-Since": OLDER}, last_modified=None)
    assert p.status == 200 and p.header("Last-Modified") is None
    assert plan({"If-Match": ETAG}, etag=None).status == 412
    assert plan({"If-Match": "*"}, etag=None).status == 200


def test_headers_of_each_outcome() -> None:
    ok = plan({})
    assert ok.header("Content-Length") == "1000" and ok.header("Last-Modified") == LM_TEXT
    assert ok.header("ETag") == ETAG and ok.spans[0].length == SIZE and ok.has_body
    single = plan({"Range": "bytes=10-19"})
    assert single.header("Content-Range") == "bytes 10-19/1000"
    assert single.content_length == 10 and single.header("Content-Length") == "10"
    bad = plan({"Range": "bytes=5000-"})
    assert bad.status == 416 and bad.header("Content-Range") == "bytes */1000"
    assert not bad.has_body
    not_modified = plan({"If-None-Match": ETAG})
    assert not_modified.header("Content-Length") is None and not_modified.header("ETag") == ETAG
    head = plan({"Range": "bytes=0-9"}, "HEAD")
    assert head.status == 206 and head.header("Content-Length") == "10" and not head.has_body


def test_multipart_plan_is_self_consistent() -> None:
    p = plan({"Range": "bytes=0-0,-1"}, boundary="XYZ")
    assert p.header("Content-Type") == "multipart/byteranges; boundary=XYZ"
    assert p.multipart is not None
    assert p.content_length == p.multipart.content_length == int(p.header("Content-Length"))


range_header = st.one_of(
    st.none(),
    st.text(alphabet="bytes=0123456789-, ", max_size=30),
    st.lists(
        st.tuples(st.integers(0, 1200), st.integers(0, 1200)).map(lambda t: f"{min(t)}-{max(t)}"),
        min_size=1,
        max_size=5,
    ).map(lambda specs: "bytes=" + ",".join(specs)),
)


@given(size=st.integers(0, 1100), rng=range_header, method=st.sampled_from(["GET", "HEAD"]))
def test_plans_are_consistent(size: int, rng: str | None, method: str) -> None:
    """Whatever the Range: the status is one of 200/206/416, Content-Length equals the
    bytes planned, spans lie inside the representation, and multipart bodies split back
    into exactly those spans."""
    headers = {"Range": rng} if rng is not None else {}
    p = plan_response(method, headers, size=size, etag=ETAG, last_modified=LM, boundary="b")
    assert p.status in (200, 206, 416)
    assert int(p.header("Content-Length")) == p.content_length
    for span in p.spans:
        assert 0 <= span.first <= span.last < size
    if p.status == 200:
        assert p.content_length == size
    if p.status == 206 and p.multipart is None:
        (span,) = p.spans
        assert p.header("Content-Range") == f"bytes {span.first}-{span.last}/{size}"
    if p.multipart is not None:
        data = bytes(i % 251 for i in range(size))
        body = p.multipart.assemble(data)
        parts = byteranges.split("multipart/byteranges; boundary=b", body)
        assert [part for _, part in parts] == [data[s.first : s.last + 1] for s in p.spans]
    assert p.has_body == (method == "GET" and p.content_length > 0)


@given(
    extra=st.dictionaries(
        st.sampled_from(["Range", "If-Modified-Since", "If-None-Match", "If-Range"]),
        st.sampled_from(["bytes=0-1", ETAG, "*", LM_TEXT, OLDER, "junk"]),
    )
)
def test_failing_if_match_always_wins(extra: dict[str, str]) -> None:
    """A failing If-Match is evaluated first and nothing else can change its 412."""
    assert plan({**extra, "If-Match": '"nope"'}).status == 412
