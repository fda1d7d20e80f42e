"""A scriptable HTTP origin on loopback: each path answers what the test says, and every
request it receives is recorded, so tests can count upstream fetches and read the
conditional headers the edge sent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict


@dataclass
class Script:
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    #: Send the body in this many pieces with `delay` seconds between them.
    pieces: int = 1
    delay: float = 0.0
    #: Answer 304 when If-None-Match carries this ETag.
    etag: str | None = None
    #: Declare the length (else chunked).
    length: bool = True
    #: Stop after this many bytes (simulates an upstream that breaks off) ...
    break_after: int | None = None
    #: ... on this many requests (then answer whole); None: always.
    breaks: int | None = None
    #: Honour one ``Range: bytes=N-`` or ``bytes=N-M`` (and If-Range against `etag`).
    ranges: bool = False


@dataclass
class Seen:
    method: str
    path: str
    headers: CIMultiDict[str]
    body: bytes
    #: The request target exactly as it arrived (path and query still encoded).
    raw: str = ""


class ScriptedOrigin:
    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.seen: list[Seen] = []
        self.finished: dict[str, float] = {}
        #: Body bytes written to the edge, all requests together.
        self.sent_bytes = 0
        #: When set, every request is accepted and never answered (for 30 s at most).
        self.hang = False
        #: Answer ``/x?anything`` as ``/x`` (as a file server does).
        self.ignore_query = False
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    def count(self, path: str, method: str = "GET") -> int:
        return sum(1 for s in self.seen if s.path == path and s.method == method)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(request.method, request.path_qs, CIMultiDict(request.headers), body,
                 request.raw_path)
        )
        if self.hang:
            await asyncio.sleep(30)
        script = self.scripts.get(request.path_qs)
        if script is None and self.ignore_query:
            script = self.scripts.get(request.path)
        if script is None:
            return web.Response(status=404, text="not scripted")
        if script.etag and request.headers.get("If-None-Match") == script.etag:
            return web.Response(status=304, headers={**script.headers, "ETag": script.etag})
        headers = dict(script.headers)
        if script.etag:
            headers["ETag"] = script.etag
        body, status = script.body, script.status
        wanted = request.headers.get("Range", "")
        if script.ranges and wanted.startswith("bytes=") and "," not in wanted:
            if request.headers.get("If-Range", script.etag) == script.etag:
                first_text, _, last_text = wanted[6:].partition("-")
                first = int(first_text)
                last = min(int(last_text), len(body) - 1) if last_text else len(body) - 1
                headers["Content-Range"] = f"bytes {first}-{last}/{len(body)}"
                body, status = body[first : last + 1], 206
        resp = web.StreamResponse(status=status, headers=headers)
        if script.length:
            resp.content_length = len(body)
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        breaking = script.break_after is not None and (script.breaks is None or script.breaks > 0)
        if breaking and script.breaks is not None:
            script.breaks -= 1
        step = max(1, -(-len(body) // script.pieces))
        for i in range(0, len(body), step):
            if breaking and script.break_after is not None and i >= script.break_after:
                assert request.transport is not None
                request.transport.abort()
                return resp
            await resp.write(body[i : i + step])
            self.sent_bytes += len(body[i : i + step])
            if script.delay:
                await asyncio.sleep(script.delay)
        await resp.write_eof()
        self.finished[request.path_qs] = asyncio.get_running_loop().time()
        return resp
