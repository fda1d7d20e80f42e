"""multipart/byteranges layout (RFC 9110 §14.6): exact lengths, parts that reassemble."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import byteranges
from vcdn.errors import ClientError
from vcdn.httpserve.multipart import boundary_of, new_boundary, plan_multipart, split_byteranges
from vcdn.ranges import ByteRange, parse_range


def test_layout_matches_rfc_example_shape() -> None:
    """Parts are delimited by CRLF--boundary and the body ends with --boundary--CRLF."""
    data = bytes(range(256)) * 4
    layout = plan_multipart([ByteRange(0, 1), ByteRange(10, 12)], len(data), "video/mp4", "B")
    body = layout.assemble(data)
    assert body == (
        b"--B\r\nContent-Type: video/mp4\r\nContent-Range: bytes 0-1/1024\r\n\r\n\x00\x01"
        b"\r\n--B\r\nContent-Type: video/mp4\r\nContent-Range: bytes 10-12/1024\r\n\r\n\x0a\x0b\x0c"
        b"\r\n--B--\r\n"
    )
    assert layout.content_length == len(body)
    assert layout.content_type == "multipart/byteranges; boundary=B"


def test_boundaries_are_random_and_valid() -> None:
    a, b = new_boundary(), new_boundary()
    assert a != b
    plan_multipart([ByteRange(0, 0)], 1, "video/mp4", a)  # accepted
    with pytest.raises(ValueError):
        plan_multipart([ByteRange(0, 0)], 1, "video/mp4", "bad\r\nboundary")


def test_boundary_of_reads_the_parameter() -> None:
    assert boundary_of('multipart/byteranges; boundary="x y"') == "x y"
    assert boundary_of("multipart/byteranges;boundary=abc") == "abc"
    assert boundary_of("video/mp4") is None


@pytest.mark.parametrize(
    "body",
    [b"", b"no delimiter", b"--B\r\nContent-Range bytes 0-0/1\r\n\r\nx\r\n--B--", b"--Bxx"],
)
def test_malformed_bodies_raise_client_error(body: bytes) -> None:
    with pytest.raises(ClientError):
        split_byteranges(body, "B")


spec = st.one_of(
    st.tuples(st.integers(0, 5000), st.integers(0, 5000)).map(
        lambda t: f"{min(t)}-{max(t)}"
    ),
    st.integers(1, 6000).map(lambda n: f"-{n}"),
    st.integers(0, 5000).map(lambda n: f"{n}-"),
)


@given(
    data=st.binary(min_size=1, max_size=4000),
    specs=st.lists(spec, min_size=2, max_size=8),
)
def test_parts_reassemble_to_the_exact_bytes(data: bytes, specs: list[str]) -> None:
    """For any range set, every part holds exactly the bytes its Content-Range names,
    and Content-Length computed in advance equals the body's length."""
    try:
        ranges = parse_range("bytes=" + ",".join(specs), len(data))
    except ClientError:
        return
    assert ranges is not None
    layout = plan_multipart(ranges, len(data), "video/mp4")
    body = layout.assemble(data)
    assert len(body) == layout.content_length
    parts = split_byteranges(body, layout.boundary)
    # ... and the standard library's MIME parser, which shares no code with ours, agrees.
    independent = byteranges.split(f"multipart/byteranges; boundary={layout.boundary}", body)
    assert len(parts) == len(ranges) == len(independent)
    for (headers, part), (theirs, their_part), r in zip(parts, independent, ranges, strict=True):
        assert headers["content-range"] == f"bytes {r.first}-{r.last}/{len(data)}"
        assert theirs["content-range"] == headers["content-range"]
        assert part == their_part == data[r.first : r.last + 1]
