"""The one body writer (`vcdn.httpserve.body`) behind a raw asyncio protocol: over TLS
(no socket to sendfile to: pread + write through the transport, its flow control obeyed)
and over plain TCP (sendfile), the same planned bytes arrive."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from vcdn.httpserve.body import TransportSink, direct_socket, send_head_and_body
from vcdn.httpserve.plan import plan_response

DATA = os.urandom(3_000_000)


class _Server(asyncio.Protocol):
    """Answers one planned multi-range GET as soon as a client connects."""

    def __init__(self, path: Path, seen: dict[str, object]) -> None:
        self.path = path
        self.seen = seen
        self.paused = False
        self.resumed: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.set_write_buffer_limits(high=64 * 1024)  # flow control must engage
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        self.seen["direct"] = direct_socket(transport) is not None
        asyncio.get_running_loop().create_task(self._answer(transport))

    def pause_writing(self) -> None:
        self.paused = True
        self.seen["paused"] = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.resumed is not None and not self.resumed.done():
            self.resumed.set_result(None)

    async def _drain(self) -> None:
        if self.paused:
            self.resumed = asyncio.get_running_loop().create_future()
            await self.resumed

    async def _answer(self, transport: asyncio.WriteTransport) -> None:
        plan = plan_response("GET", {"Range": "bytes=5-1000004,2000000-"}, size=len(DATA),
                             etag='"e"', last_modified=None, boundary="BOUNDARY")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            await send_head_and_body(transport, b"HEAD\r\n\r\n", fd, plan, self._drain)
        finally:
            os.close(fd)
        self.seen["expected"] = plan.multipart.assemble(DATA) if plan.multipart else b""
        transport.close()


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    openssl = require_tool("openssl")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True, capture_output=True, timeout=30,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    client.check_hostname = False
    return server, client


@pytest.mark.parametrize("tls", [True, False])
async def test_planned_body_arrives_whole(
    tmp_path: Path, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext], tls: bool
) -> None:
    path = tmp_path / "obj"
    path.write_bytes(DATA)
    seen: dict[str, object] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Server(path, seen), "127.0.0.1", 0, ssl=tls_pair[0] if tls else None
    )
    port = server.sockets[0].getsockname()[1]
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=tls_pair[1] if tls else None,
            server_hostname="localhost" if tls else None,
        )
        await asyncio.sleep(0.3)  # let the server's buffer fill: flow control engages
        got = await asyncio.wait_for(reader.read(-1), 20)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    assert got[:8] == b"HEAD\r\n\r\n"
    assert got[8:] == seen["expected"]
    assert seen["direct"] is (not tls)  # TLS: no plain socket, the transport sink
    assert seen.get("paused") or not tls, "the TLS transport never pushed back"


def test_transport_sink_refuses_a_closing_transport() -> None:
    class Closing:
        def is_closing(self) -> bool:
            return True

    sink = TransportSink(Closing(), lambda: asyncio.sleep(0))  # type: ignore[arg-type]
    with pytest.raises(ConnectionResetError):
        asyncio.run(sink.write(b"x"))
