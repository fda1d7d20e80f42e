"""Routes that serve the web player, the operator dashboard and hls.js from the control app.

The pages are static: all their data comes from public APIs the browser calls itself (the
control API with the operator's bearer token, steering's playback API, the appliances), so
this module holds no logic and reads no database. hls.js is installed from the npm
registry into ``node_modules/`` by ``make install`` (``npm ci``); it is never copied into
the repository. `add_routes(app)` is the one line the control app needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from aiohttp import web

HERE: Final = Path(__file__).resolve().parent
STATIC: Final = HERE / "static"
# The repository root's node_modules (an editable install); see package.json.
NODE_MODULES: Final = HERE.parents[2] / "node_modules"
HLS_JS: Final = Path("hls.js") / "dist" / "hls.min.js"
PAGES: Final = {"/player": "player.html", "/dashboard": "dashboard.html"}
# Pages and scripts change with a deploy, not per request; a short max-age keeps reloads
# cheap without serving an old page for long (RFC 9111 §5.2.2.1).
CACHE_CONTROL: Final = "public, max-age=60"
SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _file(path: Path) -> web.FileResponse:
    response = web.FileResponse(path)
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers.update(SECURITY_HEADERS)
    return response


def make_handlers(node_modules: Path) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/")
    async def index(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/dashboard")

    for url, name in PAGES.items():

        async def page(request: web.Request, name: str = name) -> web.StreamResponse:
            return _file(STATIC / name)

        routes.get(url)(page)

    @routes.get("/static/hls.js")
    async def hls_js(request: web.Request) -> web.StreamResponse:
        path = node_modules / HLS_JS
        if not path.is_file():
            raise web.HTTPNotFound(
                text="hls.js is not installed: run `make install` (or `npm ci` in the "
                "repository root), which fetches it from the npm registry.\n"
            )
        return _file(path)

    @routes.get("/static/{name}")
    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        # Only plain file names from our own folder: no "..", no sub-directories.
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound(text=f"No static file named {name!r}.\n")
        return _file(path)

    return routes


def add_routes(app: web.Application, node_modules: Path = NODE_MODULES) -> None:
    """Mount `/`, `/player`, `/dashboard` and `/static/...` on `app`."""
    app.router.add_routes(make_handlers(node_modules))
