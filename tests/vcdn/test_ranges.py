"""The Range parser against RFC 9110 §14, by table and by property."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcdn.errors import BadRange
from vcdn.ranges import MAX_RANGES, ByteRange, coalesce, parse_content_range, parse_range

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", [(0, 99)]),
        ("bytes=100-", [(100, 999)]),
        ("bytes=-100", [(900, 999)]),
        ("bytes=-5000", [(0, 999)]),  # suffix longer than the representation: all of it
        ("bytes=990-5000", [(990, 999)]),  # last-pos past the end is clipped
        ("bytes=0-0,-1", [(0, 0), (999, 999)]),
        ("bytes=500-599,0-99", [(500, 599), (0, 99)]),  # disjoint: client order kept
        ("bytes=0-99,50-149", [(0, 149)]),  # overlapping: merged
        ("bytes=0-99,100-199", [(0, 199)]),  # touching: merged
        ("bytes=100-199,0-99", [(0, 199)]),  # touching in reverse order: merged, sorted
        ("bytes=100-199,0-98", [(100, 199), (0, 98)]),  # one byte apart: client order
        ("BYTES = 0-9", [(0, 9)]),  # unit is case-insensitive, OWS allowed
        ("bytes=0-9, ,10-19", [(0, 19)]),  # empty list elements are allowed by the # rule
        ("bytes=0-9,2000-3000", [(0, 9)]),  # unsatisfiable member dropped
    ],
)
def test_satisfiable_ranges(header: str, expected: list[tuple[int, int]]) -> None:
    """Satisfiable range sets select the expected inclusive spans."""
    assert parse_range(header, SIZE) == [ByteRange(a, b) for a, b in expected]


@pytest.mark.parametrize(
    "header",
    [
        None, "", "bytes", "bytes=", "bytes=abc", "bytes=5", "bytes=9-5", "bytes=--5",
        "bytes=1-2-3", "items=0-9", "bytes=0x10-20", "bytes=+5-9", "bytes=-", "bytes=٣-٤",
        "bytes=0-9,foo", "bytes=" + "1" * 40 + "-",
        "bytes=" + ",".join(["0-1"] * (MAX_RANGES + 1)),
    ],
)
def test_malformed_or_ignored_ranges(header: str | None) -> None:
    """Malformed headers and unknown units are ignored: the caller sends 200."""
    assert parse_range(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0", "bytes=5000-,-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    """A well-formed set with nothing satisfiable is a 416 carrying the size."""
    with pytest.raises(BadRange) as info:
        parse_range(header, SIZE)
    assert info.value.size == SIZE
    assert info.value.status_hint == 416


def test_zero_length_representation_ignores_range() -> None:
    """An empty representation has no bytes to select, so the header is ignored (200)."""
    assert parse_range("bytes=0-", 0) is None


def test_content_range_text() -> None:
    assert ByteRange(0, 99).content_range(1000) == "bytes 0-99/1000"
    assert ByteRange(0, 99).length == 100


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes 0-99/1000", (0, 99, 1000)),
        ("bytes 0-99/*", (0, 99, None)),
        ("bytes 100-99/1000", None),
        ("bytes 0-1000/1000", None),
        ("bytes */1000", None),
        ("items 0-1/2", None),
        (None, None),
    ],
)
def test_parse_content_range(header: str | None, expected: object) -> None:
    assert parse_content_range(header) == expected


specs = st.one_of(
    st.tuples(st.integers(0, 3000), st.one_of(st.none(), st.integers(0, 3000))).map(
        lambda t: f"{t[0]}-" if t[1] is None else f"{t[0]}-{t[1]}"
    ),
    st.integers(0, 3000).map(lambda n: f"-{n}"),
)


@given(st.lists(specs, min_size=1, max_size=8), st.integers(1, 2000))
def test_selected_ranges_lie_inside_and_do_not_overlap(parts: list[str], size: int) -> None:
    """Every selected range lies inside [0, size) and no byte is selected twice."""
    try:
        result = parse_range("bytes=" + ",".join(parts), size)
    except BadRange:
        return
    if result is None:
        return
    for r in result:
        assert 0 <= r.first <= r.last < size
    ordered = sorted(result, key=lambda r: r.first)
    for a, b in itertools.pairwise(ordered):
        assert a.last < b.first


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 50)), min_size=1, max_size=10))
def test_coalesce_keeps_exactly_the_same_bytes(spans: list[tuple[int, int]]) -> None:
    """Coalescing neither adds nor loses a byte."""
    ranges = [ByteRange(a, a + n) for a, n in spans]
    before = {i for r in ranges for i in range(r.first, r.last + 1)}
    after = {i for r in coalesce(ranges) for i in range(r.first, r.last + 1)}
    assert before == after


@given(st.text(max_size=60), st.integers(0, 10**6))
def test_parser_never_raises_anything_but_bad_range(header: str, size: int) -> None:
    """Arbitrary text never crashes the parser."""
    try:
        parse_range(header, size)
    except BadRange:
        pass


plain_specs = st.tuples(
    st.integers(0, 3000), st.integers(0, 3000), st.sampled_from(["", "0", "000"])
).map(lambda t: f"{t[2]}{t[0]}-{t[1]}")


@given(st.lists(plain_specs, min_size=1, max_size=8), st.integers(1, 2000))
def test_plain_sets_parse_as_the_general_grammar_does(parts: list[str], size: int) -> None:
    """A set without whitespace (what players send, read by one match) selects what the
    same set with optional whitespace (read spec by spec) selects, or fails the same way."""
    def outcome(header: str) -> object:
        try:
            return parse_range(header, size)
        except BadRange:
            return "416"

    plain = "bytes=" + ",".join(parts)
    assert outcome(plain) == outcome("bytes = " + " , ".join(parts))


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-9,9-5",  # one backwards spec invalidates the whole set
        "bytes=0-9,٣-٤",  # non-ASCII digits after a plain spec
        "bytes=0-9," + "1" * 20 + "-30",  # more digits than any offset has
        "bytes=0-9,",  # a trailing empty list element is allowed (RFC 9110 §5.6.1)
    ],
)
def test_near_plain_sets(header: str) -> None:
    expected = [ByteRange(0, 9)] if header.endswith(",") else None
    assert parse_range(header, SIZE) == expected
