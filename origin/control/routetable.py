"""A route of the control app: where it is, what serves it, and how the OpenAPI document
describes it, in one value.

The app's router and its OpenAPI document are both built from one tuple of `Route`s
(`origin.control.api.table`), so no route can be served undocumented or documented but
not served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str  # upper case
    #: The path as the OpenAPI document writes it (``/api/v1/titles/{id}``).
    path: str
    handler: Handler
    #: Its OpenAPI Operation Object.
    operation: dict[str, Any]
    #: The router's pattern, when it is not `path` (a regex variable: ``{tail:[\\s\\S]*}``).
    pattern: str | None = None
    #: A GET also answers HEAD.
    head: bool = True


def mount(app: web.Application, routes: Iterable[Route]) -> None:
    """Add `routes` to the app's router, in order (the first match wins)."""
    for r in routes:
        pattern = r.pattern or r.path
        if r.method == "GET":
            app.router.add_get(pattern, r.handler, allow_head=r.head)
        else:
            app.router.add_route(r.method, pattern, r.handler)


def paths(routes: Iterable[Route]) -> dict[str, dict[str, Any]]:
    """The OpenAPI Paths Object of `routes`."""
    out: dict[str, dict[str, Any]] = {}
    for r in routes:
        out.setdefault(r.path, {})[r.method.lower()] = r.operation
    return out
