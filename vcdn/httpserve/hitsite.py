"""The listening side of the hit protocol: a site whose connections start in
`vcdn.httpserve.hitproto.HitProtocol`, over plain TCP or TLS."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiohttp import web

from vcdn.httplimits import HttpLimits
from vcdn.httpserve.hit import Answer
from vcdn.httpserve.hitproto import HitProtocol, OnHandoff


class HitSite(web.BaseSite):
    """A listening socket whose connections start in `HitProtocol`; with `ssl_context`
    they speak TLS first (the same protocol then sees the decrypted bytes, and its large
    bodies go through the transport: `vcdn.httpserve.body.TransportSink`)."""

    __slots__ = ("_answer", "_limits", "_on_handoff", "_sock", "_ssl")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: Any,
        answer: Answer,
        *,
        limits: HttpLimits,
        shutdown_timeout: float,
        backlog: int,
        on_handoff: OnHandoff | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._sock = sock
        self._answer = answer
        self._limits = limits
        self._on_handoff = on_handoff
        self._ssl = ssl_context

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"{'https' if self._ssl is not None else 'http'}://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if self._ssl is not None:
            # A handshake is bounded like a request head: a client that opens connections
            # and never finishes one holds no slot for long.
            tls = {"ssl": self._ssl, "ssl_handshake_timeout": self._limits.header_timeout}
        self._server = await loop.create_server(
            lambda: HitProtocol(server, self._answer, self._limits, self._on_handoff),
            sock=self._sock,
            backlog=self._backlog,
            **tls,
        )
