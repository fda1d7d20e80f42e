"""LL-HLS delivery directives: one canonical form, and 400 for what the spec refuses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcdn.hlsdirectives import BadDirective, Directives, parse_directives


@pytest.mark.parametrize(("query", "expected"), [
    ("", Directives()),
    ("_HLS_msn=12", Directives(12)),
    ("_HLS_part=3&_HLS_msn=12", Directives(12, 3)),
    ("x=1&_HLS_msn=12&_HLS_skip=YES&t=99", Directives(12, None, "YES")),
    ("_HLS_skip=v2", Directives(None, None, "v2")),
])
def test_parse(query: str, expected: Directives) -> None:
    assert parse_directives(query) == expected


@pytest.mark.parametrize("query", [
    "_HLS_part=1", "_HLS_msn=-1", "_HLS_msn=1.5", "_HLS_msn=", "_HLS_msn=%31%32x",
    "_HLS_msn=1&_HLS_msn=1", "_HLS_skip=yes", "_HLS_skip=", "_HLS_msn=" + "9" * 21,
    "_HLS_msn=\u0661",  # an Arabic-Indic digit: str.isdigit() says yes, HTTP says no
])
def test_refused(query: str) -> None:
    with pytest.raises(BadDirective):
        parse_directives(query)


@given(st.integers(0, 2**63), st.none() | st.integers(0, 999), st.sampled_from([None, "YES", "v2"]))
def test_canonical_form_round_trips(msn: int, part: int | None, skip: str | None) -> None:
    d = Directives(msn, part, skip)
    assert parse_directives(d.query()) == d
    assert parse_directives("z=1&" + "&".join(reversed(d.query().split("&")))) == d
