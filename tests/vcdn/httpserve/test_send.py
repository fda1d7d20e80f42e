"""The aiohttp adapter over real loopback sockets: send_bytes follows the table, large
bodies survive slow readers (EAGAIN on the socket), pipelining and disconnects, and TLS
falls back to reads."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.conftest import require_tool
from tests.http_cases import CASES, Case, Resource, check
from vcdn.httpserve.media import IMMUTABLE
from vcdn.httpserve.middleware import error_middleware
from vcdn.httpserve.send import SMALL_BODY, send_bytes, send_file

BIG = 3 * 1024 * 1024 + 17
LM = 1_700_000_000
SMALL_DATA = os.urandom(5000)
BIG_DATA = os.urandom(BIG)


def make_app(tmp: Path, *, write_big: bool = True) -> tuple[web.Application, bytes, bytes]:
    small, big = SMALL_DATA, BIG_DATA
    tmp.mkdir(parents=True, exist_ok=True)
    if write_big:
        (tmp / "big").write_bytes(big)

    async def ram(request: web.Request) -> web.StreamResponse:
        return await send_bytes(
            request, small, etag='"ram"', last_modified=LM, content_type="video/mp4",
            cache_control=IMMUTABLE, extra_headers=[("Via", "1.1 test")],
        )

    async def disk(request: web.Request) -> web.StreamResponse:
        return await send_file(
            request, tmp / "big", size=BIG, etag='"disk"', last_modified=LM,
            content_type="video/mp4", cache_control=IMMUTABLE,
        )

    async def missing(request: web.Request) -> web.StreamResponse:
        return await send_file(
            request, tmp / "nope", size=BIG, etag='"x"', last_modified=LM,
            content_type="video/mp4", cache_control=IMMUTABLE,
        )

    app = web.Application(middlewares=[error_middleware])
    app.router.add_route("GET", "/ram", ram)
    app.router.add_route("HEAD", "/ram", ram)
    app.router.add_route("GET", "/big", disk)
    app.router.add_route("GET", "/missing", missing)
    return app, small, big


@pytest.fixture
async def served(aiohttp_client, tmp_path: Path) -> tuple[TestClient, bytes, bytes]:
    app, small, big = make_app(tmp_path)
    return await aiohttp_client(app), small, big


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_send_bytes_follows_the_table(aiohttp_client, tmp_path: Path, case: Case) -> None:
    """Objects held in RAM get the same answers as files."""
    app, small, _ = make_app(tmp_path, write_big=False)
    client = await aiohttp_client(app)
    res = Resource(small, '"ram"', "Tue, 14 Nov 2023 22:13:20 GMT")
    async with client.request(case.method, "/ram", headers=case.request_headers(res)) as resp:
        body = await resp.read()
        headers = {k.lower(): v for k, v in resp.headers.items()}
        assert headers["via"] == "1.1 test"
        check(case, res, resp.status, headers, body)


async def test_missing_file_is_a_json_404(served) -> None:
    """send_file raises NotFound; the shared middleware answers 404 with a JSON reason."""
    client, _, _ = served
    async with client.get("/missing") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"] == "not_found"


async def raw_request(port: int, data: bytes, *, rcvbuf: int | None = None, delay: float = 0.0,
                      limit: int | None = None, stall_after: int | None = None,
                      stall: float = 0.0) -> bytes:
    """Send raw bytes, then read everything (slowly if `delay`), up to `limit` bytes;
    stop reading for `stall` seconds once `stall_after` bytes have arrived."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, data)
    out = bytearray()
    try:
        while limit is None or len(out) < limit:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
            if not chunk:
                break
            out += chunk
            if delay:
                await asyncio.sleep(delay)
            if stall_after is not None and len(out) >= stall_after:
                stall_after = None
                await asyncio.sleep(stall)
    finally:
        sock.close()
    return bytes(out)


def split_response(data: bytes) -> tuple[bytes, bytes]:
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    return head, rest[:length]


async def test_slow_reader_gets_every_byte(tmp_path: Path) -> None:
    """A client with a tiny receive buffer forces EAGAIN; the sender waits and resumes."""
    app, _, big = make_app(tmp_path)
    async with TestServer(app) as server:
        data = await raw_request(
            server.port, b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            rcvbuf=4096, delay=0.0005,
        )
    head, body = split_response(data)
    assert head.startswith(b"HTTP/1.1 200")
    assert body == big


async def test_pipelined_large_responses_stay_in_order(tmp_path: Path) -> None:
    """Headers of the next response never overtake the previous sendfile body."""
    app, _, big = make_app(tmp_path)
    req = (b"GET /big HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-%d\r\n\r\n" % (SMALL_BODY * 3)
           + b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    async with TestServer(app) as server:
        data = await raw_request(server.port, req)
    head1, body1 = split_response(data)
    assert head1.startswith(b"HTTP/1.1 206")
    assert body1 == big[1000 : SMALL_BODY * 3 + 1]
    rest = data[len(head1) + 4 + len(body1):]
    head2, body2 = split_response(rest)
    assert head2.startswith(b"HTTP/1.1 200")
    assert body2 == big


async def test_multirange_large_body_uses_exact_length(served) -> None:
    client, _, big = served
    rng = f"bytes=0-99,{BIG - 200_000}-{BIG - 1},500-600"
    async with client.get("/big", headers={"Range": rng}) as resp:
        body = await resp.read()
        assert resp.status == 206
        assert int(resp.headers["Content-Length"]) == len(body)
        assert "chunked" not in resp.headers.get("Transfer-Encoding", "")
        assert big[BIG - 200_000 :] in body and big[500:601] in body


async def test_client_disconnect_mid_body_leaves_server_serving(tmp_path: Path) -> None:
    app, _, big = make_app(tmp_path)
    async with TestServer(app) as server:
        partial = await raw_request(
            server.port, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n", rcvbuf=4096, limit=100_000
        )
        assert partial.startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.1)
        full = await raw_request(
            server.port, b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert split_response(full)[1] == big


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[Path, Path]:
    openssl = require_tool("openssl")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=30,
    )
    return key, cert


async def test_tls_falls_back_to_reads(tmp_path: Path, tls_cert: tuple[Path, Path]) -> None:
    """Over TLS there is no plain socket to sendfile to; bodies still arrive intact."""
    key, cert = tls_cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    app, _, big = make_app(tmp_path)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        writer.write(b"GET /big HTTP/1.1\r\nHost: x\r\nRange: bytes=10-300009\r\n"
                     b"Connection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(-1), 10)
        writer.close()
    finally:
        await runner.cleanup()
    head, body = split_response(data)
    assert head.startswith(b"HTTP/1.1 206")
    assert body == big[10:300010]


async def test_buffered_small_answer_is_flushed_before_the_next_sendfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """big (sendfile), ram (left in the transport's buffer by a full socket), big again:
    the second sendfile waits for the transport to drain, so the bytes stay in order."""
    from vcdn.httpserve import send

    seen: list[int] = []
    real_flushed = send.flushed

    async def spy(transport, drain) -> None:  # type: ignore[no-untyped-def]
        seen.append(transport.get_write_buffer_size())
        await real_flushed(transport, drain)

    monkeypatch.setattr(send, "flushed", spy)
    app, small, _ = make_app(tmp_path, write_big=False)
    mid = BIG_DATA[:200_000]  # above SMALL_BODY: sent with sendfile
    (tmp_path / "mid").write_bytes(mid)

    async def serve_mid(request: web.Request) -> web.StreamResponse:
        return await send_file(
            request, tmp_path / "mid", size=len(mid), etag='"mid"', last_modified=LM,
            content_type="video/mp4", cache_control=IMMUTABLE,
        )

    app.router.add_get("/mid", serve_mid)

    async def shrink_sndbuf(request: web.Request, response: web.StreamResponse) -> None:
        sock = request.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    app.on_response_prepare.append(shrink_sndbuf)
    req = (b"GET /mid HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /ram HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /mid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    async with TestServer(app) as server:
        data = await raw_request(server.port, req, rcvbuf=4096, delay=0.001)
    assert any(seen), "the transport was never left holding bytes; the test proves nothing"
    rest = data
    for expected in (mid, small, mid):
        head, body = split_response(rest)
        assert head.startswith(b"HTTP/1.1 200")
        assert body == expected
        rest = rest[len(head) + 4 + len(body):]
    assert rest == b""


def test_sendfile_paths_hold_under_uvloop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same socket-level scenarios on uvloop, the loop `vcdn origin` and the edge run."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert "uvloop" in type(runner.get_loop()).__module__
        runner.run(test_buffered_small_answer_is_flushed_before_the_next_sendfile(
            tmp_path / "a", monkeypatch))
        runner.run(test_slow_reader_gets_every_byte(tmp_path / "b"))
        runner.run(test_pipelined_large_responses_stay_in_order(tmp_path / "c"))
        runner.run(test_client_disconnect_mid_body_leaves_server_serving(tmp_path / "d"))
