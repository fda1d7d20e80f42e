"""One head serialiser at the origin: every path of one file sends the same header fields.

The first answer (the application's), a hot hit from RAM, a large hit sent from its file,
304, 416 and HEAD, over a fresh connection (the hit protocol) and over one aiohttp owns
(the request-level hook); only the fields the status itself defines differ."""

from __future__ import annotations

import aiohttp

from origin.content.app import METRICS_KEY, hit_answer, make_app
from origin.content.settings import OriginSettings
from tests.origin.content.conftest import TITLE
from vcdn.httplimits import HttpLimits
from vcdn.httpserve.server import start

BY_STATUS = {"content-range", "content-length", "content-type"}
#: A 416 is not the representation: no Cache-Control (`vcdn.httpserve.wire.CACHE_CONTROL_ON`).
NOT_ON = {"416": {"cache-control"}}


async def _names(s: aiohttp.ClientSession, method: str, url: str, **kw: object) -> set[str]:
    async with s.request(method, url, **kw) as r:  # type: ignore[arg-type]
        await r.read()
        assert r.headers.get("Server") == "vcdn", (url, r.headers.get("Server"))
        return {k.lower() for k in r.headers} - BY_STATUS


async def test_every_origin_path_sends_the_same_fields(store) -> None:
    root, _ = store
    app = make_app(OriginSettings(root=root, hot_object_max=50_000))
    runner, url = await start(app, "127.0.0.1", 0, HttpLimits(), answer=hit_answer(app))
    small, large = f"{url}/v/{TITLE}/small.bin", f"{url}/v/{TITLE}/large.bin"
    names: dict[str, set[str]] = {}
    try:
        for how, connector in (("", None), ("handed-off ", 1)):
            # One connection whose first request is a miss: aiohttp owns it from then on.
            conn = aiohttp.TCPConnector(limit=connector) if connector else None
            async with aiohttp.ClientSession(connector=conn) as s:
                if connector:
                    await _names(s, "GET", f"{url}/v/{TITLE}/v1/init.mp4?x=1")
                names[how + "first"] = await _names(s, "GET", small)
                names[how + "large first"] = await _names(s, "GET", large)
                names[how + "fast hit"] = await _names(s, "GET", small)
                names[how + "large hit"] = await _names(s, "GET", large)
                names[how + "range"] = await _names(s, "GET", large,
                                                    headers={"Range": "bytes=1000-70000"})
                async with s.get(small) as r:
                    etag = r.headers["ETag"]
                names[how + "304"] = await _names(s, "GET", small,
                                                  headers={"If-None-Match": etag})
                names[how + "416"] = await _names(s, "GET", large,
                                                  headers={"Range": "bytes=99999999-"})
                names[how + "HEAD"] = await _names(s, "HEAD", large)
    finally:
        await runner.cleanup()
    # All but the first two answers came from the hit planner: 7 on the first connection,
    # 9 on the handed-off one (where both files were hot already).
    assert app[METRICS_KEY].hot_hits == 16
    reference = names["fast hit"]
    assert {"date", "server", "etag", "cache-control", "last-modified"} <= reference
    for path, got in names.items():
        expected = reference - NOT_ON.get(path.removeprefix("handed-off "), set())
        assert got == expected, (path, sorted(got ^ expected))
