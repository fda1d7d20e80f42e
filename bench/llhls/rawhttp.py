"""A minimal HTTP/1.1 client for the simulated players: keep-alive GETs over asyncio
streams with a Content-Length or chunked body, and nothing else (no TLS, redirects,
compression or trailers).

The players are the benchmark's largest CPU user, on the same cores as the edge they
measure; aiohttp's client spent about 250 us of CPU per request there, so their own
processing, not the edge, set much of the end-to-end delay. Each `Client` holds its
player's idle connections (a blocking playlist request and a part in flight at once take
two).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

FirstByte = Callable[[], None]


class HttpError(Exception):
    """The connection failed, timed out or sent something this client does not read."""


class Client:
    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, target: str, on_first_byte: FirstByte | None = None) -> tuple[int, bytes]:
        """(status, body) of ``GET target``; `on_first_byte` is called when the first
        bytes of the body (or of a body-less answer's head) have arrived."""
        if self._idle:
            reader, writer = self._idle.pop()
        else:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.timeout)
            except (OSError, TimeoutError) as exc:
                raise HttpError(f"connect: {exc}") from None
        try:
            async with asyncio.timeout(self.timeout):
                writer.write(f"GET {target} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
                status, length, chunked, close = _head(await reader.readuntil(b"\r\n\r\n"))
                if chunked:
                    body = await _chunked(reader, on_first_byte)
                else:
                    body = await reader.readexactly(length) if length else b""
                    if on_first_byte is not None:
                        on_first_byte()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                TimeoutError, ValueError) as exc:
            writer.close()
            raise HttpError(f"{type(exc).__name__}: {exc}") from None
        if close:
            writer.close()
        else:
            self._idle.append((reader, writer))
        return status, body

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


def _head(head: bytes) -> tuple[int, int, bool, bool]:
    """(status, Content-Length, chunked, connection closes) of a response head."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "connection":
            close = "close" in value.lower()
    return status, length, chunked, close


async def _chunked(reader: asyncio.StreamReader, on_first_byte: FirstByte | None) -> bytes:
    pieces = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # the end (no trailers)
            return b"".join(pieces)
        data = await reader.readexactly(size + 2)
        if not pieces and on_first_byte is not None:
            on_first_byte()
        pieces.append(data[:-2])
