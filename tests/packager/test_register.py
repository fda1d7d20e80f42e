"""Registering a title: POST /api/v1/titles with the manifest and the packager's token.

The control API is another component; here a tiny in-process aiohttp server on loopback
records what the packager sends and answers as told."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from packager.register import register_title
from vcdn.errors import Unauthorized, UpstreamError, UpstreamStatus, UpstreamTimeout
from vcdn.schemas import FileEntry, Rendition, TitleManifest, decode

MANIFEST = TitleManifest(
    title="t1",
    duration=6.0,
    segment_seconds=2.0,
    format="fmp4",
    single_file=False,
    renditions=[Rendition("240p", 320, 240, 560_000, 500_000, "avc1.64000d,mp4a.40.2", 30.0,
                          "240p/index.m3u8")],
    files=[FileEntry("master.m3u8", 210, "ab" * 32)],
    created_at="2026-11-21T20:00:00Z",
)


def recording_app(status: int, body: dict, delay: float = 0.0) -> tuple[web.Application,
                                                                         list[dict]]:
    seen: list[dict] = []

    async def titles(request: web.Request) -> web.Response:
        seen.append({
            "method": request.method,
            "path": request.path,
            "auth": request.headers.get("Authorization"),
            "type": request.content_type,
            "json": await request.json(),
        })
        await asyncio.sleep(delay)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/api/v1/titles", titles)
    return app, seen


@pytest.mark.parametrize("status", [200, 201])
async def test_registration_posts_the_manifest_with_the_bearer_token(aiohttp_server,
                                                                     status: int) -> None:
    app, seen = recording_app(status, {"title": "t1"})
    server = await aiohttp_server(app)
    got = await register_title(str(server.make_url("/")), MANIFEST, "s3cret")
    assert got == status
    (req,) = seen
    assert (req["method"], req["path"], req["auth"]) == ("POST", "/api/v1/titles",
                                                         "Bearer s3cret")
    assert req["type"] == "application/json"
    assert decode(TitleManifest, req["json"]) == MANIFEST


async def test_a_refusal_names_the_status_and_quotes_the_detail(aiohttp_server) -> None:
    app, _ = recording_app(401, {"detail": "Bearer token is not valid."})
    server = await aiohttp_server(app)
    with pytest.raises(Unauthorized, match=r"POST /titles: 401: Bearer token is not valid\."):
        await register_title(str(server.make_url("")), MANIFEST, "wrong")


async def test_a_server_error_is_an_upstream_status(aiohttp_server) -> None:
    app, _ = recording_app(503, {"detail": "database is down"})
    server = await aiohttp_server(app)
    with pytest.raises(UpstreamStatus, match="503: database is down") as info:
        await register_title(str(server.make_url("")), MANIFEST, "t")
    assert info.value.status == 503


async def test_an_unreachable_control_api_is_a_clear_upstream_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(UpstreamError, match=f"Cannot reach the control API at {url}"):
        await register_title(f"http://127.0.0.1:{port}", MANIFEST, "t")


async def test_a_slow_control_api_times_out(aiohttp_server) -> None:
    app, _ = recording_app(201, {}, delay=5)
    server = await aiohttp_server(app)
    with pytest.raises(UpstreamTimeout, match="did not answer in time"):
        await register_title(str(server.make_url("")), MANIFEST, "t", timeout_s=0.3)


async def test_registration_over_https_verifies_the_control_plane(
    tmp_path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    """The packager trusts the CA in VCDN_CA_BUNDLE; without it the same server is refused
    in one line naming the host and the reason."""
    import trustme

    from tests.vcdn.tls_helpers import ca_file, issue
    from vcdn.tls import CertPair
    from vcdn.tls_io import server_context

    ca = trustme.CA()
    leaf = issue(ca, tmp_path, "127.0.0.1")
    app, seen = recording_app(201, {"title": "t1"})
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0,
                       ssl_context=server_context(CertPair(leaf.cert, leaf.key)))
    await site.start()
    port = runner.addresses[0][1]
    try:
        monkeypatch.delenv("VCDN_CA_BUNDLE", raising=False)
        with pytest.raises(UpstreamError) as info:
            await register_title(f"https://127.0.0.1:{port}", MANIFEST, "t")
        assert str(info.value) == (f"TLS to the control API at 127.0.0.1:{port} failed: its "
                                   "certificate cannot be trusted: it is signed by an unknown CA.")
        assert seen == []
        monkeypatch.setenv("VCDN_CA_BUNDLE", str(ca_file(ca, tmp_path)))
        assert await register_title(f"https://127.0.0.1:{port}", MANIFEST, "t") == 201
        assert len(seen) == 1
    finally:
        await runner.cleanup()
