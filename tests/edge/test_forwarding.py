"""Which request fields go upstream (edge.forwarding), pure."""

from __future__ import annotations

from edge.forwarding import VIA, end_to_end, fill_request


def test_end_to_end_drops_hop_by_hop_and_connection_named_fields() -> None:
    out = end_to_end(
        [("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "5"),
         ("TE", "trailers"), ("Host", "a"), ("Accept", "text/html"), ("X-Test", "1")],
        "10.0.0.1",
    )
    assert out == {"Accept": "text/html", "X-Test": "1", "Via": VIA,
                   "X-Forwarded-For": "10.0.0.1"}


def test_end_to_end_joins_repeats_and_appends_to_via_and_xff() -> None:
    out = end_to_end(
        [("Foo", "1"), ("foo", "2"), ("Via", "1.1 a"), ("Via", "1.1 b"),
         ("X-Forwarded-For", "1.2.3.4")],
        "10.0.0.1",
    )
    assert out["Foo"] == "1, 2"
    assert out["Via"] == f"1.1 a, 1.1 b, {VIA}"
    assert out["X-Forwarded-For"] == "1.2.3.4, 10.0.0.1"


def test_fill_request_leaves_validators_and_ranges_to_the_cache() -> None:
    out = fill_request(
        [("If-None-Match", '"x"'), ("If-Modified-Since", "Mon, 01 Jan 2024 00:00:00 GMT"),
         ("If-Match", "*"), ("If-Unmodified-Since", "x"), ("If-Range", '"x"'),
         ("Range", "bytes=0-1"), ("Content-Length", "0"), ("Accept-Language", "en"),
         ("Cache-Control", "max-age=0"), ("Authorization", "Bearer t")],
        None,
    )
    assert out == {"Accept-Language": "en", "Cache-Control": "max-age=0",
                   "Authorization": "Bearer t", "Via": VIA}
