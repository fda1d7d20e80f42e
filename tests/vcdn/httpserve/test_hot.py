"""The hot-object cache: byte-bounded LRU, and prebuilt heads equal to the planner's."""

from __future__ import annotations

import pytest

from vcdn.httpserve.hot import HotCache, build_entry
from vcdn.httpserve.plan import plan_response
from vcdn.httpserve.wire import head_prefix, head_tail


def entry(size: int, etag: str = '"e"'):
    return build_entry(
        b"x" * size, etag=etag, last_modified=1_700_000_000, content_type="video/mp4",
        cache_control="public, max-age=60", stamp=None, now=0.0, open_file=lambda: -1,
    )


def test_lru_is_bounded_by_bytes() -> None:
    one = entry(100)
    cost = one.cost
    cache = HotCache(capacity=cost * 2, object_max=1000)
    cache.put("a", one)
    cache.put("b", entry(100))
    assert cache.get("a") is not None  # a is now most recent
    cache.put("c", entry(100))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.used == 2 * cost


def test_objects_over_the_limit_are_not_kept() -> None:
    cache = HotCache(capacity=10_000, object_max=50)
    cache.put("big", entry(51))
    assert cache.get("big") is None and cache.used == 0


def test_discard_and_replace() -> None:
    cache = HotCache(capacity=10_000, object_max=1000)
    cache.put("a", entry(10))
    cache.replace("a", cache.get("a").revalidated(5.0))
    assert cache.get("a").checked == 5.0
    cache.replace("missing", entry(10))
    assert cache.get("missing") is None
    cache.discard("a")
    assert len(cache) == 0 and cache.used == 0


def test_prebuilt_head_has_the_planners_fields() -> None:
    """Fast-path answers carry the same validators and lengths as a planned 200."""
    e = entry(123)
    head = e.prepared.plain.decode()
    assert head.startswith("HTTP/1.1 200 OK\r\n") and head.endswith("\r\n")
    assert "Date" not in head  # the per-answer tail adds it
    fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:-1])
    plan = plan_response("GET", {}, size=123, etag='"e"', last_modified=1_700_000_000,
                         content_type="video/mp4")
    for name, value in plan.headers:
        assert fields[name] == value
    assert fields["Access-Control-Allow-Origin"] == "*"
    assert fields["Cache-Control"] == "public, max-age=60"
    assert fields["Server"] == "vcdn"


def test_planned_heads_add_the_entry_fields() -> None:
    """206/304/416 heads: the planner's fields, then CORS/Server, Cache-Control when due."""
    e = entry(1000)
    plan = plan_response("GET", {"Range": "bytes=0-9"}, size=1000, etag='"e"',
                         last_modified=1_700_000_000, content_type="video/mp4")
    head = (head_prefix(plan, e.prepared.stored) + head_tail(0.0)).decode()
    assert head.startswith("HTTP/1.1 206 Partial Content\r\n")
    assert "Content-Range: bytes 0-9/1000\r\n" in head and "Content-Length: 10\r\n" in head
    assert "Cache-Control: public, max-age=60\r\n" in head
    assert head.endswith("Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n")
    bad = plan_response("GET", {"Range": "bytes=5000-"}, size=1000, etag='"e"',
                        last_modified=None, content_type="video/mp4")
    head = (head_prefix(bad, e.prepared.stored) + head_tail(0.0)).decode()
    assert head.startswith("HTTP/1.1 416 Range Not Satisfiable") and "Cache-Control" not in head


def test_file_backed_entries_need_a_size() -> None:
    with pytest.raises(ValueError):
        build_entry(None, etag='"e"', last_modified=None, content_type="video/mp4",
                    cache_control=None, stamp=None, open_file=lambda: 0)
    e = build_entry(None, size=5_000_000, open_file=lambda: 0, etag='"e"', last_modified=None,
                    content_type="video/mp4", cache_control=None, stamp=None)
    assert b"Content-Length: 5000000\r\n" in e.prepared.plain and e.cost < 1000


@pytest.mark.parametrize("name", ["Range", "range", "IF-NONE-MATCH", "If-Modified-Since",
                                  "if-match", "If-Unmodified-Since", "if-range"])
def test_any_planner_field_in_any_case_leaves_the_prebuilt_path(name: str) -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    from vcdn.httpserve.hit import NEEDS_PLANNER, plain

    assert plain(CIMultiDictProxy(CIMultiDict({"Host": "x", "Accept": "*/*"})))
    assert not plain(CIMultiDictProxy(CIMultiDict({"Host": "x", name: "v"})))
    assert name.lower() in {n.lower() for n in NEEDS_PLANNER}
