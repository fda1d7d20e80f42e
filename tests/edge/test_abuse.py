"""Hostile requests: path traversal, oversized heads, wrong methods, junk titles."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.edge.conftest import TITLE, sign


@pytest.fixture
async def edge(origin: TestServer, make_edge) -> TestClient:  # type: ignore[no-untyped-def]
    return await make_edge(str(origin.make_url("")).rstrip("/"))


async def _raw(client: TestClient, request: bytes) -> bytes:
    """Send bytes as they are (no client normalisation) and return the raw answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return data


@pytest.mark.parametrize(
    "tail",
    [
        "../../../etc/passwd",
        "v1/../../../../etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "v1/%2fetc%2fpasswd",
        "v1/..%5c..%5cetc",
        "v1/%252e%252e/x",
        "v1//index.m3u8",
        "/etc/passwd",
        "v1/.hidden",
        "v1/%00",
    ],
)
async def test_path_traversal_is_refused(edge: TestClient, tail: str) -> None:
    """No spelling of '..', encoded slashes or absolute paths escapes the title."""
    answer = await _raw(
        edge, f"GET /s/{sign()}/{TITLE}/{tail} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 404), answer[:200]
    assert b"root:" not in answer


async def test_oversized_header_gets_431(edge: TestClient) -> None:
    """A request head beyond the limit is refused with 431 (RFC 6585 §5)."""
    headers = {f"X-Pad-{i}": "a" * 1000 for i in range(20)}
    resp = await edge.get(f"/s/{sign()}/{TITLE}/v1/index.m3u8", headers=headers)
    assert resp.status == 431


async def test_huge_single_header_is_refused(edge: TestClient) -> None:
    """A single field longer than the parser accepts never reaches the handler."""
    answer = await _raw(
        edge, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"
    )
    assert answer.split(b" ", 2)[1] in (b"400", b"431")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_appliance_refuses_other_methods(edge: TestClient, method: str) -> None:
    """Appliance mode answers only GET/HEAD/OPTIONS; the rest get 405 with Allow."""
    resp = await edge.request(method, f"/s/{sign()}/{TITLE}/v1/index.m3u8")
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]


async def test_options_preflight(edge: TestClient) -> None:
    """CORS preflight is answered without a token check or an upstream request."""
    resp = await edge.options(
        f"/s/{sign()}/{TITLE}/v1/index.m3u8",
        headers={"Origin": "https://player.example", "Access-Control-Request-Method": "GET"},
    )
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("title", ["..", ".hidden", "a" * 200, "bad title", "x%2fy"])
async def test_bad_titles_are_not_found(edge: TestClient, title: str) -> None:
    answer = await _raw(
        edge, f"GET /s/{sign(title)}/{title}/x HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    assert answer.split(b" ", 2)[1] in (b"400", b"404")


async def test_malformed_request_line(edge: TestClient) -> None:
    """Junk is a 400 from the parser, never a traceback."""
    answer = await _raw(edge, b"\x16\x03\x01 garbage\r\n\r\n")
    assert answer.split(b" ", 2)[1] == b"400"
    assert b"Traceback" not in answer
