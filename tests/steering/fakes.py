"""A stand-in for the control API (GET /api/v1/appliances and /titles/{id}) running in
its own thread, so that tests may block on dig/kdig subprocesses while it keeps serving.

For unit and integration tests of steering only; end-to-end tests use the real control API.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from aiohttp import web


def appliance(id: str, site: str, url: str, **kw: Any) -> dict[str, Any]:
    """One ApplianceView as the control API sends it."""
    return {
        "id": id, "site": site, "public_url": url, "capacity_bytes": 10 * 2**30,
        "asn": kw.get("asn", 0), "lat": kw.get("lat", 0.0), "lon": kw.get("lon", 0.0),
        "prefixes": kw.get("prefixes", []), "state": kw.get("state", "healthy"),
        "last_heartbeat": time.time(),
        "load": {"requests_per_s": kw.get("rps", 0.0), "bytes_per_s": kw.get("bps", 0.0),
                 "connections": 0},
        "free_bytes": 0, "used_bytes": 0, "bytes_served": 0, "hit_ratio": 0.0,
    }


class FakeControl:
    def __init__(self, token: str = "steer-token") -> None:
        self.token = token
        self.appliances: list[dict[str, Any]] = []
        self.titles: set[str] = set()
        self.heartbeat_interval = 10.0
        self.fail = False
        self.requests = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _appliances(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.fail:
            return web.json_response({"error": "down"}, status=500)
        if not self._authorized(request):
            return web.json_response({"error": "token"}, status=401)
        return web.json_response({"appliances": list(self.appliances),
                                  "heartbeat_interval": self.heartbeat_interval,
                                  "generated_at": time.time()})

    async def _title(self, request: web.Request) -> web.Response:
        if self.fail:
            return web.json_response({"error": "down"}, status=500)
        if request.match_info["id"] in self.titles:
            return web.json_response({"title": request.match_info["id"]})
        return web.json_response({"error": "not found"}, status=404)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_get("/api/v1/appliances", self._appliances)
        app.router.add_get("/api/v1/titles/{id}", self._title)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> FakeControl:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def _cleanup() -> None:
            await self._runner.cleanup()

        fut = asyncio.run_coroutine_threadsafe(_cleanup(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
