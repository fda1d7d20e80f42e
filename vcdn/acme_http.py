"""HTTP-01 answers (RFC 8555 §8.3): ``GET /.well-known/acme-challenge/{token}``.

The ACME server fetches that URL over plain HTTP on port 80 of the name being validated
(or the port its configuration says, as pebble's ``httpPort``); the answer is the key
authorization for the token, as ``application/octet-stream``. `Challenges` holds the
tokens an order in progress has published; `middleware` answers them on an existing
listener (the appliance's public port) before any other routing, `make_app` on a listener
of its own (`vcdn cert obtain`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

PREFIX: Final = "/.well-known/acme-challenge/"
# RFC 8555 §8.3: the token is base64url, at least 128 bits of entropy.
_TOKEN: Final = re.compile(r"^[A-Za-z0-9_-]{16,256}$")


class Challenges:
    """Tokens being validated and their key authorizations."""

    def __init__(self) -> None:
        self._answers: dict[str, str] = {}
        self.served = 0

    def publish(self, token: str, key_authorization: str) -> None:
        self._answers[token] = key_authorization

    def withdraw(self, token: str) -> None:
        self._answers.pop(token, None)

    def answer(self, path: str) -> web.Response | None:
        """The response for a request path under `PREFIX`; None for any other path."""
        if not path.startswith(PREFIX):
            return None
        token = path[len(PREFIX):]
        answer = self._answers.get(token) if _TOKEN.match(token) else None
        if answer is None:
            return web.Response(status=404, text="No such ACME challenge.\n")
        self.served += 1
        return web.Response(body=answer.encode(), content_type="application/octet-stream")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def middleware(challenges: Challenges) -> Callable[[web.Request, Handler],
                                                    Awaitable[web.StreamResponse]]:
    """An aiohttp middleware answering challenges ahead of the app's own routes."""

    @web.middleware
    async def acme_challenge(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in ("GET", "HEAD"):
            response = challenges.answer(request.path)
            if response is not None:
                return response
        return await handler(request)

    return acme_challenge


def make_app(challenges: Challenges) -> web.Application:
    """A listener that answers only challenges (everything else 404)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return challenges.answer(request.path) or web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app
