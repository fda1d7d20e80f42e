"""The operator's admin API, on its own port (localhost by default), bearer token required.

    GET  /api/v1/status            what `appliance-ctl status` prints
    POST /api/v1/drain             heartbeats say `draining`; steering stops sending clients
    POST /api/v1/undrain
    POST /api/v1/fill-now          one fill pass now, whatever the fill window says
    POST /api/v1/purge/{title}     drop a title from the cache
    GET  /healthz, /metrics        no token (read-only, for local monitoring)

Handlers are thin: authenticate, call the daemon through `Controls`, answer JSON.
"""

from __future__ import annotations

import hmac
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from vcdn.errors import Unauthorized
from vcdn.httpserve.middleware import error_middleware
from vcdn.metrics import REGISTRY_KEY, metrics_handler
from vcdn.titles import validate_title


class Controls(Protocol):
    def summary(self) -> dict[str, Any]: ...

    def drain(self) -> None: ...

    def undrain(self) -> None: ...

    def fill_now(self) -> None: ...

    async def purge(self, title: str) -> int: ...


CONTROLS = web.AppKey("appliance_controls", Controls)
OPERATOR_TOKEN = web.AppKey("appliance_operator_token", str)


def _authorize(request: web.Request) -> None:
    expected = request.app[OPERATOR_TOKEN]
    if not expected:
        raise Unauthorized(
            "This appliance has no operator token configured (operator_token in its settings "
            "or VCDN_OPERATOR_TOKEN); the admin API is locked."
        )
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # RFC 6750 §2.1 bearer token; RFC 9110 §11.1: the scheme is case-insensitive.
    given = token.strip().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected.encode()):
        raise Unauthorized("The admin API needs 'Authorization: Bearer OPERATOR_TOKEN'.")


async def status(request: web.Request) -> web.Response:
    _authorize(request)
    return web.json_response(request.app[CONTROLS].summary())


async def drain(request: web.Request) -> web.Response:
    _authorize(request)
    request.app[CONTROLS].drain()
    return web.json_response({"state": "draining"})


async def undrain(request: web.Request) -> web.Response:
    _authorize(request)
    request.app[CONTROLS].undrain()
    return web.json_response({"state": "serving"})


async def fill_now(request: web.Request) -> web.Response:
    _authorize(request)
    request.app[CONTROLS].fill_now()
    return web.json_response({"fill": "started"}, status=202)


async def purge(request: web.Request) -> web.Response:
    _authorize(request)
    title = validate_title(request.match_info["title"])
    removed = await request.app[CONTROLS].purge(title)
    return web.json_response({"title": title, "objects_removed": removed})


async def healthz(request: web.Request) -> web.Response:
    summary = request.app[CONTROLS].summary()
    return web.json_response({"state": summary["state"], "fill_paused": summary["fill"]["paused"]})


def make_admin_app(controls: Controls, token: str, registry: CollectorRegistry) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=4096)
    app[CONTROLS] = controls
    app[OPERATOR_TOKEN] = token
    app[REGISTRY_KEY] = registry
    app.router.add_get("/api/v1/status", status)
    app.router.add_post("/api/v1/drain", drain)
    app.router.add_post("/api/v1/undrain", undrain)
    app.router.add_post("/api/v1/fill-now", fill_now)
    app.router.add_post("/api/v1/purge/{title}", purge)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    return app
