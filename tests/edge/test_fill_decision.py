"""The pure fill decision (edge.fill_decision): what a fill does with the upstream's answer."""

from __future__ import annotations

from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

from edge import vary
from edge.fill_decision import (
    NotStorable,
    Revalidated,
    StoreDraft,
    conditional,
    decide,
)
from edge.store import Entry

KEY = "t1/v/seg_1.m4s"
NOW = 1_000_000.0


def _headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def _decide(status: int, *pairs: tuple[str, str], **kw: Any) -> Any:
    args: dict[str, Any] = {
        "key": KEY, "title": "t1", "path": "v/seg_1.m4s", "status": status,
        "headers": _headers(*pairs), "request_time": NOW - 1, "response_time": NOW,
        "stale": None, "capacity": 10_000, "request": {"Via": "1.1 vcdn"},
        "content_type": lambda path: "video/iso.segment",
    }
    return decide(**(args | kw))


STALE = Entry(KEY, "t1", "v/seg_1.m4s", 100, "video/mp4", etag='"v1"',
              last_modified=NOW - 3600, cache_control="max-age=1")


def test_a_cacheable_answer_becomes_a_draft_with_its_freshness() -> None:
    d = _decide(200, ("Content-Length", "100"), ("ETag", '"v1"'),
                ("Cache-Control", "max-age=60"), ("X-Extra", "kept"))
    assert isinstance(d, StoreDraft) and d.length == 100
    e = d.draft
    assert (e.key, e.size, e.etag, e.lifetime) == (KEY, 100, '"v1"', 60)
    assert e.content_type == "video/iso.segment"  # none upstream: the edge's media type
    assert ("X-Extra", "kept") in e.headers and e.response_time == NOW


def test_without_content_length_the_size_is_unknown_until_written() -> None:
    d = _decide(200, ("Cache-Control", "max-age=60"))
    assert isinstance(d, StoreDraft) and d.length is None and d.draft.size == -1


def test_a_304_to_our_conditional_request_revalidates_the_stale_entry() -> None:
    d = _decide(304, ("Cache-Control", "max-age=120"), stale=STALE)
    assert isinstance(d, Revalidated)
    assert d.changes["lifetime"] == 120 and d.changes["etag"] == '"v1"'
    assert d.changes["response_time"] == NOW


def test_a_304_nobody_asked_for_is_not_stored() -> None:
    assert isinstance(_decide(304), NotStorable)


def test_what_may_not_be_stored_says_why() -> None:
    assert _decide(200, ("Cache-Control", "no-store")) == NotStorable("no-store")
    assert _decide(200, ("Cache-Control", "private")) == NotStorable("private")
    assert _decide(500).reason == "status 500"
    big = _decide(200, ("Content-Length", "10001"), ("Cache-Control", "max-age=60"))
    assert big == NotStorable("larger than the cache")


def test_a_vary_answer_is_stored_as_the_variant_of_the_fields_this_fill_sent() -> None:
    sent = {"Via": "1.1 vcdn", "Accept-Language": "fi"}
    d = _decide(200, ("Vary", "Accept-Language"), ("Cache-Control", "max-age=60"),
                request=sent)
    assert isinstance(d, StoreDraft)
    assert d.draft.key != KEY and vary.primary_of(d.draft.key) == KEY
    assert vary.selects(d.draft.key, "Accept-Language", sent)
    assert not vary.selects(d.draft.key, "Accept-Language", {"Accept-Language": "sv"})


def test_the_fill_asks_conditionally_with_the_stale_validators() -> None:
    sent = conditional({"Via": "1.1 vcdn"}, STALE)
    assert sent["If-None-Match"] == '"v1"' and sent["If-Modified-Since"].endswith("GMT")
    assert conditional({"Via": "1.1 vcdn"}, None) == {"Via": "1.1 vcdn"}
