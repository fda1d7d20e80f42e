"""The origin app: routes, errors, traversal over raw sockets, ETags from manifests,
metrics, CORS, and the abuse limits."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from origin.content import catalog
from origin.content.app import make_app
from origin.content.settings import OriginSettings
from tests.origin.content.conftest import TITLE
from vcdn.httplimits import HttpLimits
from vcdn.httpserve.server import start


@pytest.fixture
async def client(aiohttp_client, store) -> TestClient:
    root, _ = store
    return await aiohttp_client(make_app(OriginSettings(root=root)))


async def raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(-1), 5.0)
    finally:
        writer.close()


TRAVERSALS = [
    "/v/t/../../secret.txt",
    "/v/t/..%2f..%2fsecret.txt",
    "/v/t/%2e%2e/%2e%2e/secret.txt",
    "/v/%2e%2e/secret.txt",
    "/v/t/%252e%252e/%252e%252e/secret.txt",
    "/v/t/..%5c..%5csecret.txt",
    "/v/t/..\\..\\secret.txt",
    "/v/t/link-out",
    "/v/t/x%00.m4s",
    "/v//etc/passwd",
    "/v/t//secret.txt",
    "/v/%2fetc%2fpasswd",
    "http://x/v/t/../../secret.txt",
    "http://x/v/t/%2e%2e/%2e%2e/secret.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_nothing_outside_the_root_is_readable(store, target: str) -> None:
    """Each traversal trick, sent byte for byte as written, gets 400 or 404 and no secret."""
    root, _ = store
    (root.parent / "secret.txt").write_text("TOP-SECRET")
    os.symlink(root.parent / "secret.txt", root / TITLE / "link-out")
    async with TestServer(make_app(OriginSettings(root=root))) as server:
        answer = await raw(
            server.port, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 404), answer[:200]
    assert b"TOP-SECRET" not in answer


async def test_absolute_form_request_target(store) -> None:
    """RFC 9112 §3.2.2: `GET http://host/v/...` names the same file as `GET /v/...`."""
    root, files = store
    async with TestServer(make_app(OriginSettings(root=root))) as server:
        answer = await raw(
            server.port,
            b"GET http://cdn.example/v/t/master.m3u8 HTTP/1.1\r\nHost: cdn.example\r\n"
            b"Connection: close\r\n\r\n",
        )
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(files["master.m3u8"])


@pytest.mark.parametrize("path", ["/v/t/", "/v/t", "/v/t/v1", "/v/nope/master.m3u8", "/x"])
async def test_missing_files_and_directories_are_404(client: TestClient, path: str) -> None:
    async with client.get(path) as resp:
        assert resp.status == 404
        body = await resp.json()
        assert set(body) == {"error", "detail"}


@pytest.mark.parametrize("method", ["POST", "DELETE", "PATCH"])
async def test_other_methods_get_405_with_allow(client: TestClient, method: str) -> None:
    """PUT is live ingest (tests/origin/content/test_ingest.py); nothing else writes."""
    async with client.request(method, f"/v/{TITLE}/master.m3u8") as resp:
        assert resp.status == 405
        allowed = set(resp.headers["Allow"].replace(" ", "").split(","))
        assert allowed == {"GET", "HEAD", "OPTIONS", "PUT"}


async def test_options_preflight(client: TestClient) -> None:
    headers = {
        "Origin": "https://player.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range",
    }
    async with client.options(f"/v/{TITLE}/v1/seg_00001.m4s", headers=headers) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "GET" in resp.headers["Access-Control-Allow-Methods"]
        assert resp.headers["Access-Control-Allow-Headers"] == "range"


async def test_media_types_cache_control_and_cors(client: TestClient) -> None:
    expected = {
        "master.m3u8": ("application/vnd.apple.mpegurl", "public, max-age=300"),
        "v1/init.mp4": ("video/mp4", "public, max-age=31536000, immutable"),
        "v1/seg_00001.m4s": ("video/mp4", "public, max-age=31536000, immutable"),
        "manifest.json": ("application/json", "public, max-age=60"),
    }
    for rel, (ctype, cc) in expected.items():
        async with client.get(f"/v/{TITLE}/{rel}") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == ctype
            assert resp.headers["Cache-Control"] == cc
            assert "Content-Range" in resp.headers["Access-Control-Expose-Headers"]
            assert resp.headers["Date"]


async def test_etag_is_the_manifest_sha256(client: TestClient, store) -> None:
    """Files listed in manifest.json carry their sha256 as a strong ETag; others a stat tag."""
    _, files = store
    async with client.get(f"/v/{TITLE}/v1/seg_00001.m4s") as resp:
        assert resp.headers["ETag"] == f'"{hashlib.sha256(files["v1/seg_00001.m4s"]).hexdigest()}"'
    async with client.get(f"/v/{TITLE}/small.bin") as resp:
        assert resp.headers["ETag"].count("-") == 2


async def test_manifest_changes_are_picked_up(client: TestClient, store, monkeypatch) -> None:
    """A republished manifest.json (new mtime) changes the ETags served."""
    monkeypatch.setattr(catalog, "RECHECK_SECONDS", 0.0)
    root, _ = store
    path = f"/v/{TITLE}/v1/init.mp4"
    async with client.get(path) as resp:
        first = resp.headers["ETag"]
    manifest_path = root / TITLE / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for f in manifest["files"]:
        if f["path"] == "v1/init.mp4":
            f["sha256"] = "ab" * 32
    manifest_path.write_text(json.dumps(manifest))
    st = manifest_path.stat()
    os.utime(manifest_path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    async with client.get(path) as resp:
        assert resp.headers["ETag"] == '"' + "ab" * 32 + '"' != first


async def test_broken_manifest_falls_back_to_stat_etags(client: TestClient, store) -> None:
    root, _ = store
    (root / TITLE / "manifest.json").write_text("{not json")
    async with client.get(f"/v/{TITLE}/v1/init.mp4") as resp:
        assert resp.status == 200
        assert resp.headers["ETag"].count("-") == 2


async def test_healthz_and_metrics(client: TestClient, store) -> None:
    _, files = store
    async with client.get("/healthz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
    for _ in range(3):
        async with client.get(f"/v/{TITLE}/small.bin") as resp:
            await resp.read()
    async with client.get(f"/v/{TITLE}/missing") as resp:
        assert resp.status == 404
    async with client.get("/metrics") as resp:
        text = await resp.text()
    assert 'vcdn_origin_requests_total{status="200"} 3.0' in text
    assert 'vcdn_origin_requests_total{status="404"} 1.0' in text
    assert f'vcdn_origin_bytes_sent_total{{status="200"}} {3.0 * len(files["small.bin"])}' in text


async def test_oversized_header_is_refused(client: TestClient) -> None:
    async with client.get(f"/v/{TITLE}/small.bin", headers={"X-Big": "a" * 20000}) as resp:
        assert resp.status in (400, 431)


async def test_oversized_request_line_is_refused(store) -> None:
    root, _ = store
    async with TestServer(make_app(OriginSettings(root=root))) as server:
        line = b"GET /v/t/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        answer = await raw(server.port, line)
    assert answer.split(b" ", 2)[1] in (b"400", b"414", b"431")


async def test_slow_request_head_is_cut_off(store) -> None:
    """A client dribbling its request head is disconnected at the keep-alive deadline."""
    root, _ = store
    limits = HttpLimits(keepalive_timeout=0.5)
    runner, url = await start(make_app(OriginSettings(root=root)), "127.0.0.1", 0, limits)
    try:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        closed = False
        for _ in range(40):  # bounded: at most ~4 s
            try:
                writer.write(b"X")
                await writer.drain()
                if await asyncio.wait_for(reader.read(1), 0.1) == b"":
                    closed = True
                    break
            except (TimeoutError, ConnectionError):
                if reader.at_eof() or writer.is_closing():
                    closed = True
                    break
        writer.close()
        assert closed and loop.time() - started < 3.0
    finally:
        await runner.cleanup()


async def test_connections_beyond_the_cap_are_closed(store) -> None:
    root, _ = store
    limits = HttpLimits(max_connections=2)
    runner, url = await start(make_app(OriginSettings(root=root)), "127.0.0.1", 0, limits)
    port = int(url.rsplit(":", 1)[1])
    conns = []
    try:
        for _ in range(2):
            conns.append(await asyncio.open_connection("127.0.0.1", port))
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conns.append((reader, writer))
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(reader.read(-1), 3) == b""
        r0, w0 = conns[0]
        w0.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(r0.readline(), 3)).startswith(b"HTTP/1.1 200")
    finally:
        for _, w in conns:
            w.close()
        await runner.cleanup()


def test_settings_root_is_required(tmp_path: Path) -> None:
    from vcdn.errors import ConfigError
    from vcdn.settings import load_settings

    with pytest.raises(ConfigError, match="root"):
        load_settings(OriginSettings, env={})
