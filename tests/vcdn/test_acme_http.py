"""HTTP-01 answers: only published tokens, only GET/HEAD, nothing else leaks through."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from vcdn.acme_http import PREFIX, Challenges, middleware

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    challenges = Challenges()
    challenges.publish(TOKEN, f"{TOKEN}.thumbprint")

    async def rest(request: web.Request) -> web.Response:
        return web.Response(text="app")

    app = web.Application(middlewares=[middleware(challenges)])
    app.router.add_route("*", "/{tail:.*}", rest)
    return await aiohttp_client(app)


async def test_a_published_token_gets_its_key_authorization(client: Any) -> None:
    r = await client.get(PREFIX + TOKEN)
    assert r.status == 200 and await r.text() == f"{TOKEN}.thumbprint"
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert (await client.head(PREFIX + TOKEN)).status == 200


@pytest.mark.parametrize("path", [
    "unknown-token-0123456789abcdef", "short", "a" * 300, TOKEN + "/x",
    "%2e%2e%2fetc", TOKEN[:-1] + "=", "",
])
async def test_anything_else_under_the_prefix_is_404(client: Any, path: str) -> None:
    r = await client.get(PREFIX + path)
    assert r.status == 404


async def test_other_paths_and_methods_reach_the_app(client: Any) -> None:
    assert await (await client.get("/s/tok/title/master.m3u8")).text() == "app"
    assert await (await client.post(PREFIX + TOKEN)).text() == "app"
