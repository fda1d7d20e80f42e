"""The hot-object cache: byte-bounded LRU, and prebuilt heads equal to the planner's."""

from __future__ import annotations

from vcdn.httpserve.hot import HotCache, build_entry
from vcdn.httpserve.plan import plan_response


def entry(size: int, etag: str = '"e"'):
    return build_entry(
        b"x" * size, etag=etag, last_modified=1_700_000_000, content_type="video/mp4",
        cache_control="public, max-age=60", stamp=None, now=0.0,
    )


def test_lru_is_bounded_by_bytes() -> None:
    one = entry(100)
    cost = len(one.body) + len(one.head)
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
    head = e.head.decode()
    assert head.startswith("HTTP/1.1 200 OK\r\n") and head.endswith("Date: ")
    fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:-1])
    plan = plan_response("GET", {}, size=123, etag='"e"', last_modified=1_700_000_000,
                         content_type="video/mp4")
    for name, value in plan.headers:
        assert fields[name] == value
    assert fields["Access-Control-Allow-Origin"] == "*"
    assert fields["Cache-Control"] == "public, max-age=60"
