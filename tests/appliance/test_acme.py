"""The appliance's own certificate from a real ACME server (pebble): issued at start over
HTTP-01 on the public port, served by the video listener's HTTPS port and the admin
listener, renewed without a restart (loads of new connections on both, video hits and
admin calls, run across the swap with no failed request), and kept when a renewal fails
(with the alert gauge up)."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path

import aiohttp

from onebox.procs import free_port
from tests.appliance.conftest import (
    appliance_toml,
    blob,
    make_title,
    run_appliance,
    signed,
)
from tests.pebble import pebble
from tests.vcdn.tls_helpers import peer_names
from vcdn.acme_client import validity

MAX_REQUESTS = 2000


class Load:
    """New-connection GETs (each a full handshake) until stopped, at most MAX_REQUESTS."""

    def __init__(self, url: str, ca: Path, body: bytes | None = None) -> None:
        self.url, self.ca = url, ca
        self.digest = hashlib.sha256(body).digest() if body is not None else None
        self.ok = self.failed = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        connector = aiohttp.TCPConnector(ssl=ctx, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(MAX_REQUESTS):
                if self.stop.is_set():
                    return
                try:
                    async with session.get(self.url) as resp:
                        data = await resp.read()
                        whole = self.digest in (None, hashlib.sha256(data).digest())
                        if resp.status == 200 and whole:
                            self.ok += 1
                        else:
                            self.failed += 1
                except aiohttp.ClientError:
                    self.failed += 1


async def test_the_appliance_obtains_swaps_and_keeps_its_certificate(
    tmp_path: Path, origin, origin_root: Path, control  # type: ignore[no-untyped-def]
) -> None:
    from appliance import settings as settings_mod

    segment = blob(600_000, seed=3)  # above the one-write body size: a task sends it
    make_title(origin_root, "acme", {"seg.ts": segment})
    port, admin, tls_port = free_port(), free_port(), free_port()
    with pebble(tmp_path / "pebble", port) as acme:
        path = appliance_toml(
            tmp_path / "a.toml", id="a1", site="s1", port=port, admin_port=admin,
            cache_dir=tmp_path / "cache", control_url=control.url, origin_url=origin.url,
            admin_tls=True, acme_directory=acme.directory, acme_domains=["localhost"],
            tls_cert=str(tmp_path / "tls/tls.crt"), tls_key=str(tmp_path / "tls/tls.key"),
            ca_bundle=str(acme.ca_bundle), tls_port=tls_port,
            public_url=f"http://localhost:{port}",
        )
        running = await run_appliance(settings_mod.load(path, env={}))
        app = running.appliance
        try:
            # Issued at start through HTTP-01 on the public port; the video listener's
            # HTTPS port and the admin port serve it; the HTTPS URL is what registers.
            assert app.challenges.served >= 1
            first = (tmp_path / "tls/tls.crt").read_bytes()
            assert await peer_names(admin, "localhost", acme.root) == "localhost"
            assert await peer_names(tls_port, "localhost", acme.root) == "localhost"
            assert app.settings.tls_url == f"https://localhost:{tls_port}"
            assert running.urls["public_tls"] == f"https://127.0.0.1:{tls_port}"
            assert app.renewer is not None and app.renewer.due_in() > 0
            video = f"https://localhost:{tls_port}/s/{signed('acme')}/acme/seg.ts"
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
                    ssl=ssl.create_default_context(cafile=str(acme.root)))) as s, \
                    s.get(video) as resp:  # the fill; what follows are hits
                assert resp.status == 200 and await resp.read() == segment
            # A renewal swaps without a restart, under load: new connections (each a full
            # handshake) keep coming across the swap on both listeners, and none fails.
            loads = [Load(f"https://localhost:{admin}/healthz", acme.root),
                     Load(video, acme.root, segment)]
            tasks = [asyncio.create_task(load.run()) for load in loads]
            await asyncio.sleep(0.3)
            before = [load.ok for load in loads]
            assert await app.renewer.renew()
            await asyncio.sleep(0.3)
            for load in loads:
                load.stop.set()
            await asyncio.gather(*tasks)
            for load, then in zip(loads, before, strict=True):
                assert then > 0 and load.ok > then and load.failed == 0, (load.ok, load.failed)
            second = (tmp_path / "tls/tls.crt").read_bytes()
            assert second != first and validity(second)[1] >= validity(first)[1]
            assert app.cert_watch is not None and app.cert_watch.reloads == 1
            # The ACME server goes away: the renewal fails, the certificate stays, the
            # alert gauge is up.
            acme.proc.terminate()
            acme.proc.wait(10)
            assert not await app.renewer.renew()
            assert app.renewer.failing._value.get() == 1
            assert (tmp_path / "tls/tls.crt").read_bytes() == second
            assert await peer_names(admin, "localhost", acme.root) == "localhost"
            assert await peer_names(tls_port, "localhost", acme.root) == "localhost"
        finally:
            await running.stop()
