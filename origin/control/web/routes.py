"""Routes that serve the web player, the operator dashboard and hls.js from the control app.

The pages are static: all their data comes from public APIs the browser calls itself (the
control API with the operator's bearer token, steering's playback API, the appliances), so
this module holds no logic and reads no database. hls.js is installed from the npm
registry into ``node_modules/`` by ``make install`` (``npm ci``); it is never copied into
the repository. `routes()` is what the control app's route table (`origin.control.api`)
takes from here: each route with its OpenAPI operation, so the document lists these too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from aiohttp import web

from origin.control.routetable import Route

HERE: Final = Path(__file__).resolve().parent
STATIC: Final = HERE / "static"
# The repository root's node_modules (an editable install); see package.json.
NODE_MODULES: Final = HERE.parents[2] / "node_modules"
HLS_JS: Final = Path("hls.js") / "dist" / "hls.min.js"
# dash.js plays the DASH manifest (manifest.mpd) the packager writes beside master.m3u8.
DASH_JS: Final = Path("dashjs") / "dist" / "modern" / "umd" / "dash.all.min.js"
# Shaka Player: a second, independent DASH player (`/player?protocol=shaka`).
SHAKA_JS: Final = Path("shaka-player") / "dist" / "shaka-player.compiled.js"
VENDORED: Final = {"hls.js": HLS_JS, "dash.js": DASH_JS, "shaka.js": SHAKA_JS}
# Only the files shipped in static/ are served, by exact name: nothing a request names can
# reach another file.
FILES: Final = {p.name: p for p in STATIC.iterdir() if p.is_file() and not p.name.startswith(".")}
PAGES: Final = {"/": "dashboard.html", "/player": "player.html", "/dashboard": "dashboard.html"}
# Pages and scripts change with a deploy, not per request; a short max-age keeps reloads
# cheap without serving an old page for long (RFC 9111 §5.2.2.1).
CACHE_CONTROL: Final = "public, max-age=60"
SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# Named here rather than guessed from the host's mime tables, which differ between machines
# (RFC 9239: JavaScript is text/javascript).
TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def _file(path: Path) -> web.FileResponse:
    response = web.FileResponse(path)
    response.headers["Content-Type"] = TYPES.get(path.suffix, "application/octet-stream")
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers.update(SECURITY_HEADERS)
    return response


STRING: Final = {"type": "string"}


def _page(summary: str, kind: str = "text/html") -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "tags": ["web"],
            "security": [],
            "responses": {
                "200": {"description": "The file.", "content": {kind: {"schema": STRING}}},
            },
        }
    }


def _missing(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_OPERATIONS: Final[dict[str, Any]] = {
    "/": _page("The operator dashboard (the site's front page)."),
    "/dashboard": _page(
        "The operator dashboard: appliances, sites, history charts. Pass the operator token "
        "in the URL fragment (#token=...), which never reaches a server."
    ),
    "/player": _page(
        "The web player (hls.js; dash.js with &protocol=dash, Shaka with &protocol=shaka): "
        "?title=ID&steering=URL."
    ),
    **{
        f"/static/{name}": {
            "get": {
                **_page(f"{name} from node_modules (installed by `make install`).",
                        "text/javascript")["get"],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {"text/javascript": {"schema": {"type": "string"}}},
                    },
                    "404": _missing(f"{name} is not installed."),
                },
            }
        }
        for name in VENDORED
    },
    "/static/{name}": {
        "get": {
            "summary": "The pages' scripts and style sheet.",
            "tags": ["web"],
            "security": [],
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {
                    "description": "The file.",
                    "content": {
                        "text/javascript": {"schema": {"type": "string"}},
                        "text/css": {"schema": {"type": "string"}},
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
                "404": _missing("No such file."),
            },
        }
    },
}


def routes(node_modules: Path = NODE_MODULES) -> list[Route]:
    """`/`, `/dashboard`, `/player` and `/static/...`, scripts from `node_modules`."""
    out: list[Route] = []

    for url, name in PAGES.items():

        async def page(request: web.Request, name: str = name) -> web.StreamResponse:
            return _file(FILES[name])

        out.append(Route("GET", url, page, _OPERATIONS[url]["get"], head=False))

    for name, relative in VENDORED.items():

        async def vendored(
            request: web.Request, name: str = name, relative: Path = relative
        ) -> web.StreamResponse:
            path = node_modules / relative
            if not path.is_file():
                raise web.HTTPNotFound(
                    text=f"{name} is not installed: run `make install` (or `npm ci` in the "
                    "repository root), which fetches it from the npm registry."
                )
            return _file(path)

        url = f"/static/{name}"
        out.append(Route("GET", url, vendored, _OPERATIONS[url]["get"], head=False))

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in FILES:
            raise web.HTTPNotFound(text=f"No static file named {name[:64]!r}.")
        return _file(FILES[name])

    out.append(
        Route("GET", "/static/{name}", static, _OPERATIONS["/static/{name}"]["get"], head=False)
    )
    return out
