"""RFC 9111 decisions of the shared cache, pure: repeated field lines, Age parsing,
must-understand, fields targeted at us (RFC 9213 CDN-Cache-Control, Surrogate-Control),
and what a 304 updates. Each case is one the HTTP caching conformance suite checks."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from edge import freshness as f
from edge import targeted
from edge.revalidate import refreshed
from edge.store import Entry

NOW = 1_700_000_000.0
DATE = "Tue, 14 Nov 2023 22:13:20 GMT"  # == NOW
LATER = "Tue, 14 Nov 2023 23:13:20 GMT"  # NOW + 3600


def test_repeated_cache_control_lines_are_one_list() -> None:
    """Before: only the first line was read, so ``s-maxage=1`` on a second line was lost
    and the response stayed fresh for the first line's hour."""
    headers = CIMultiDict([("Cache-Control", "max-age=3600"), ("Cache-Control", "s-maxage=1")])
    assert f.policy(headers, NOW).lifetime == 1


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (None, 0.0),
        ("30", 30.0),
        (" 30 ", 30.0),
        ("abc", 2.0**31),
        ("-7200", 2.0**31),
        ("7200.0", 2.0**31),
        ("7200,0", 2.0**31),
        ("0, 0", 2.0**31),
        ("7200;foo=1", 2.0**31),
        ("99999999999", 2.0**31),
    ],
)
def test_age_field_is_exactly_one_delta_seconds(age: str | None, expected: float) -> None:
    assert f.age_field(age) == expected


def test_an_invalid_age_makes_a_fresh_response_stale() -> None:
    headers = CIMultiDict([("Date", DATE), ("Cache-Control", "max-age=3600"),
                           ("Age", "0"), ("Age", "0")])  # two lines: "0, 0"
    initial = f.initial_age(headers, NOW, NOW)
    assert f.judge(f.policy(headers, NOW), f.current_age(initial, NOW, NOW), {}).fresh is False


@pytest.mark.parametrize(
    ("status", "cc", "ok"),
    [
        (200, "max-age=60, no-store, must-understand", True),  # understood: no-store ignored
        (599, "max-age=3600, must-understand", False),  # not understood: never stored
        (200, "max-age=60, no-store", False),
    ],
)
def test_must_understand(status: int, cc: str, ok: bool) -> None:
    assert f.storable("GET", status, {}, {"Cache-Control": cc})[0] is ok


def test_must_understand_keeps_an_unknown_status_out_of_the_negative_cache() -> None:
    cc = {"Cache-Control": "max-age=3600, must-understand"}
    assert f.negative_lifetime(599, {}, cc, NOW, 5.0) == 0
    assert f.negative_lifetime(500, {}, cc, NOW, 5.0) == 5.0


def test_cdn_cache_control_replaces_cache_control_and_expires() -> None:
    """RFC 9213 §2.1: the targeted field wins, whatever Cache-Control or Expires say."""
    headers = {"Cache-Control": "no-store", "CDN-Cache-Control": "max-age=600",
               "Expires": LATER, "Date": DATE}
    assert f.storable("GET", 200, {}, headers)[0] is True
    assert f.policy(headers, NOW).lifetime == 600
    assert f.policy({"CDN-Cache-Control": "no-cache", "Expires": LATER, "Date": DATE},
                    NOW).lifetime == 0


def test_an_invalid_targeted_field_is_ignored() -> None:
    headers = {"Cache-Control": "max-age=60", "CDN-Cache-Control": '"broken'}
    assert f.policy(headers, NOW).lifetime == 60


@pytest.mark.parametrize(
    ("value", "lifetime"),
    [
        ("max-age=3600", 3600),
        (f"max-age=3600;{targeted.DEVICE}", 3600),
        ("max-age=3600;another-cdn", 1),  # for someone else: Cache-Control applies
        (f"max-age=5;another-cdn, max-age=50;{targeted.DEVICE}", 50),
        ("MaX-aGe=3600", 3600),
    ],
)
def test_surrogate_control_for_this_device(value: str, lifetime: float) -> None:
    headers = {"Cache-Control": "max-age=1", "Surrogate-Control": value}
    assert f.policy(headers, NOW).lifetime == lifetime


def test_surrogate_no_store_beats_a_fresh_cache_control() -> None:
    headers = {"Cache-Control": "max-age=10000", "Surrogate-Control": "no-store"}
    assert f.storable("GET", 200, {}, headers)[0] is False


def _stored(**kw: object) -> Entry:
    base: dict[str, object] = {
        "key": "/a", "title": "", "path": "/a", "size": 5, "content_type": "text/plain",
        "etag": '"abcdef"', "cache_control": "max-age=1",
        "headers": (("Content-MD5", "rL0Y20zC+Fzt72VPzMSk2A=="), ("X-Rev", "a")),
        "response_time": NOW, "lifetime": 1.0,
    }
    base.update(kw)
    return Entry(**base)  # type: ignore[arg-type]


def test_a_304_updates_fields_but_not_the_stored_bodys_validators() -> None:
    """§4.3.4: the 304 is about the stored body, so its ETag and Content-MD5 stay; other
    fields, Content-Type and the freshness they imply, are the 304's."""
    changes = refreshed(
        _stored(),
        [("ETag", '"ghijkl"'), ("Content-MD5", "N7UdGUp1E+RbVvZSTy1R8g=="), ("X-Rev", "b"),
         ("Content-Type", "text/plain;charset=utf-8"), ("Cache-Control", "max-age=3600"),
         ("Date", DATE)],
        NOW, NOW,
    )
    assert changes["etag"] == '"abcdef"'
    assert dict(changes["headers"])["Content-MD5"] == "rL0Y20zC+Fzt72VPzMSk2A=="
    assert dict(changes["headers"])["X-Rev"] == "b"
    assert changes["content_type"] == "text/plain;charset=utf-8"
    assert changes["cache_control"] == "max-age=3600"
    assert changes["lifetime"] == 3600


def test_a_bare_304_keeps_the_stored_freshness_fields() -> None:
    changes = refreshed(_stored(cache_control="max-age=60"), [("Date", DATE)], NOW, NOW)
    assert changes["cache_control"] == "max-age=60" and changes["lifetime"] == 60
    assert changes["content_type"] == "text/plain"
