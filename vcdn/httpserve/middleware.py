"""Error translation at the HTTP boundary, shared by the origin and the edge.

A `VcdnError` becomes its ``status_hint`` with ``{"error": ..., "detail": ...}``; an
unexpected exception becomes a logged 500 without a traceback in the body; a client that
disconnects mid-answer is recorded as 499, quietly. Every error
answer carries CORS headers, so a browser player can read why it failed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from vcdn.errors import VcdnError
from vcdn.httpserve.cors import RESPONSE_HEADERS
from vcdn.logs import event

log = logging.getLogger("vcdn.httpserve")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLIENT_CLOSED: Final = 499


def _code(exc: Exception) -> str:
    """`NotFound` → ``not_found``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()


def error_response(status: int, error: str, detail: str) -> web.Response:
    resp = web.json_response({"error": error, "detail": detail}, status=status)
    resp.headers.update(dict(RESPONSE_HEADERS))
    return resp


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except VcdnError as exc:
        if exc.status_hint >= 500:
            event(log, "request_failed", logging.ERROR, path=request.path, error=str(exc))
        return error_response(exc.status_hint, _code(exc), str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = re.sub(r"[^a-z0-9]+", "_", exc.reason.lower()).strip("_")
        resp = error_response(exc.status, code, exc.reason)
        for name in ("Allow",):
            if name in exc.headers:
                resp.headers[name] = exc.headers[name]
        return resp
    except ConnectionError:
        # The client went away mid-answer. A fresh response makes aiohttp's own write fail
        # and end the connection quietly (no "Error handling request" traceback in logs);
        # 499 is nginx's "client closed request", so metrics can count these.
        return web.Response(status=CLIENT_CLOSED)
    except TimeoutError:
        raise
    except Exception:
        log.exception("unexpected_error", extra={"fields": {"path": request.path}})
        return error_response(500, "internal_error", "The server failed; see its log.")
