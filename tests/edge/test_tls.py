"""`vcdn edge` over HTTPS as real processes, with real clients: two workers listen plain
HTTP on --port and HTTPS on --tls-port; curl --cacert gets hits, ranges, 304, 416 and HEAD
with the bytes and the head fields of plain HTTP; openssl s_client sees the policy; a
certificate swap (SIGHUP, a changed file) keeps open connections and serves new ones with
the new certificate; bad TLS settings stop start-up with a sentence naming the setting; fills
from an https:// upstream verify it against `ca_bundle`."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import os
import signal
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

from edge.app import make_app
from edge.settings import EdgeSettings
from edge.workers import start_edge
from tests.conftest import ROOT, require_tool
from tests.edge.conftest import edge_settings
from tests.edge.scripted_origin import Script, ScriptedOrigin
from tests.vcdn.tls_helpers import ca_file, issue, peer_names, run, s_client
from vcdn.errors import ConfigError

pytestmark = pytest.mark.slow

DATA = bytes(range(256)) * 8192  # 2 MiB
ETAG = '"v7"'
HEADERS = {"Content-Type": "video/mp4", "Cache-Control": "public, max-age=3600",
           "Accept-Ranges": "bytes"}


async def _edge(tmp_path: Path, upstream: str, cert: Path, key: Path,
                ) -> tuple[asyncio.subprocess.Process, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCDN_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vcdn.cli", "edge", "--cache-dir", str(tmp_path / "cache"),
        "--upstream", upstream, "--auth", "none", "--mode", "appliance", "--port", "0",
        "--tls-port", "0", "--tls-cert", str(cert), "--tls-key", str(key), "--workers", "2",
        "--capacity", "64MiB", "--log-level", "warning",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env, cwd=ROOT,
        start_new_session=True)
    assert proc.stdout is not None
    lines = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode() for _ in range(2)]
    urls = [line.split("listening on ", 1)[1].split()[0] for line in lines]
    assert urls[0].startswith("http://") and urls[1].startswith("https://"), lines
    return proc, urls[0], urls[1]


async def _curl(ca: Path, url: str, *args: str) -> tuple[int, dict[str, str], bytes]:
    """(status, head fields, body) as curl saw them: the head on stdout, the body in a file."""
    curl = require_tool("curl")
    body_file = ca.parent / "body"
    body_file.unlink(missing_ok=True)
    code, out = await run(curl, "-sS", "--max-time", "10", "--cacert", str(ca), "-D", "-",
                          "-o", str(body_file),
                          *args, url)
    assert code == 0, out
    body = body_file.read_bytes() if body_file.exists() else b""
    status_line, *fields = out.split("\r\n\r\n")[0].split("\r\n")
    head = {}
    for line in fields:
        name, _, value = line.partition(":")
        head[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), head, body


def _names(head: dict[str, str]) -> set[str]:
    return set(head) - {"content-range", "content-length", "content-type"}


async def test_https_hits_through_both_workers_and_a_certificate_swap(
        aiohttp_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    origin = ScriptedOrigin()
    origin.scripts["/v/t/seg.m4s"] = Script(body=DATA, headers=dict(HEADERS), etag=ETAG,
                                            ranges=True)
    up = await aiohttp_server(origin.app)
    ca = trustme.CA()
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    chain = issue(ca, tmp_path / "tls", "127.0.0.1", "edge-a.example")
    proc, url, tls_url = await _edge(tmp_path, str(up.make_url("")).rstrip("/"),
                                     chain.cert, chain.key)
    try:
        obj = "/v/t/seg.m4s"
        status, _, body = await _curl(ca_pem, url + obj)  # the fill, over plain HTTP
        assert status == 200 and body == DATA
        plain: dict[str, set[str]] = {}
        for name, args in (("hit", ()), ("range", ("-H", "Range: bytes=1000-66535")),
                           ("304", ("-H", f"If-None-Match: {ETAG}")),
                           ("416", ("-H", "Range: bytes=99999999-")), ("HEAD", ("-I",))):
            for base in (url, tls_url):
                status, head, body = await _curl(ca_pem, base + obj, *args)
                want = {"hit": 200, "range": 206, "304": 304, "416": 416, "HEAD": 200}[name]
                assert status == want, (base, name, status)
                if name == "hit":
                    assert hashlib.sha256(body).digest() == hashlib.sha256(DATA).digest()
                elif name == "range":
                    assert head["content-range"] == f"bytes 1000-66535/{len(DATA)}"
                    assert body == DATA[1000:66536]
                elif name == "416":
                    assert head["content-range"] == f"bytes */{len(DATA)}"
                elif name == "304":
                    assert body == b""
                else:  # curl -I writes the head where the body would go
                    assert head["content-length"] == str(len(DATA))
                if base == url:
                    plain[name] = _names(head)
                else:  # HTTPS heads carry exactly the fields of plain HTTP
                    assert _names(head) == plain[name], (name, _names(head) ^ plain[name])
        assert origin.count(obj) == 1  # every answer above but the first was a hit

        port = int(tls_url.rsplit(":", 1)[1])
        # The policy, seen by openssl: TLS 1.1 refused, TLS 1.3 with ALPN http/1.1.
        code, out = await s_client(port, "-tls1_1", stdin=b"")
        assert code != 0, out
        code, out = await s_client(port, "-tls1_3", "-alpn", "http/1.1", "-CAfile", str(ca_pem),
                                   "-servername", "edge-a.example", stdin=b"Q\n")
        assert "ALPN protocol: http/1.1" in out and "Verify return code: 0 (ok)" in out, out

        # An open keep-alive HTTPS connection, then a new chain for another name by SIGHUP.
        ctx = ssl.create_default_context(cafile=str(ca_pem))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        conn.request("GET", obj, headers={"Range": "bytes=0-99"})
        assert conn.getresponse().read() == DATA[:100]
        assert "edge-a.example" in await peer_names(port, "127.0.0.1", ca_pem)
        swapped = issue(ca, tmp_path / "tls2", "127.0.0.1", "edge-b.example")
        os.replace(swapped.cert, chain.cert)
        os.replace(swapped.key, chain.key)
        proc.send_signal(signal.SIGHUP)
        for _ in range(100):  # both workers: every new handshake gets the new chain
            seen = {await peer_names(port, "127.0.0.1", ca_pem) for _ in range(6)}
            if all("edge-b.example" in s for s in seen):
                break
            await asyncio.sleep(0.1)
        assert all("edge-b.example" in s for s in seen), seen
        conn.request("GET", obj, headers={"Range": "bytes=100-199"})  # the same connection
        resp = conn.getresponse()
        assert resp.status == 206 and resp.read() == DATA[100:200]
        assert "edge-a.example" in str(conn.sock.getpeercert())  # it kept its certificate
        conn.close()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:  # the workers too: they hold the stdout pipe
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


@pytest.mark.parametrize(("kw", "message"), [
    ({"tls_port": 8443}, "'tls_port' needs a certificate"),
    ({"tls_cert": Path("c.pem")}, "'tls_cert' and 'tls_key' go together"),
    ({"tls_cert": Path("c.pem"), "tls_key": Path("k.pem"), "tls_port": 8080},
     "need a port each"),
])
def test_bad_tls_settings_are_refused(tmp_path: Path, kw: dict[str, object],
                                      message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EdgeSettings(cache_dir=tmp_path, upstream="http://127.0.0.1:1", auth="none", **kw)  # type: ignore[arg-type]


async def test_fills_from_an_https_upstream_verify_against_ca_bundle(tmp_path: Path) -> None:
    """The engine's upstream session trusts `ca_bundle`: with it the fill works; without
    it (the system store) the same upstream is refused and nothing is stored."""
    origin = ScriptedOrigin()
    origin.scripts["/v/t/seg.m4s"] = Script(body=DATA[:50_000], headers=dict(HEADERS), etag=ETAG)
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    runner = web.AppRunner(origin.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    upstream = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        for name, bundle, want in (("trusted", ca_file(ca, tmp_path / "ca"), 200),
                                   ("untrusted", None, 502)):
            settings = edge_settings(tmp_path / name, upstream, auth="none", signing_keys="",
                                     port=0, ca_bundle=bundle, retries=0)
            edge_runner, url = await start_edge(make_app(settings), settings,
                                                shutdown_timeout=1.0)
            try:
                async with aiohttp.ClientSession() as s, s.get(f"{url}/v/t/seg.m4s") as resp:
                    body = await resp.read()
                    assert resp.status == want, (name, resp.status, body[:200])
                    if want == 200:
                        assert body == DATA[:50_000]
            finally:
                await edge_runner.cleanup()
    finally:
        await runner.cleanup()
    assert origin.count("/v/t/seg.m4s") == 1  # the untrusted edge never got an answer


async def test_a_missing_certificate_stops_the_workers_parent_in_one_line(
        tmp_path: Path) -> None:
    """Checked before any worker starts: one sentence naming the file, exit 1, no hang
    waiting for workers that died."""
    key = issue(trustme.CA(), tmp_path / "tls", "127.0.0.1").key
    code, out = await run(
        sys.executable, "-m", "vcdn.cli", "edge", "--cache-dir", str(tmp_path / "cache"),
        "--upstream", "http://127.0.0.1:1", "--auth", "none", "--port", "0", "--tls-port", "0",
        "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(key), "--workers", "2",
        within=30)
    assert code == 1, out
    assert f"TLS file '{tmp_path / 'missing.pem'}' does not exist." in out, out


async def test_pipelined_https_ranges_keep_order_and_flow_control(tmp_path: Path) -> None:
    """A client that pipelines 96 range requests over TLS before reading a byte: the hit
    protocol writes each small range with its head in one write, stops reading while the
    transport's buffer is full, and every answer arrives whole and in order."""
    origin = ScriptedOrigin()
    origin.scripts["/v/t/seg.m4s"] = Script(body=DATA, headers=dict(HEADERS), etag=ETAG)
    runner = web.AppRunner(origin.app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    ca = trustme.CA()
    chain = issue(ca, tmp_path / "tls", "127.0.0.1")
    settings = edge_settings(tmp_path, f"http://127.0.0.1:{runner.addresses[0][1]}",
                             auth="none", signing_keys="", port=0, tls_cert=chain.cert,
                             tls_key=chain.key)
    edge_runner, url = await start_edge(make_app(settings), settings, shutdown_timeout=1.0)
    try:
        assert url.startswith("https://")
        ctx = ssl.create_default_context()
        ca.configure_trust(ctx)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s, \
                s.get(f"{url}/v/t/seg.m4s") as resp:
            assert await resp.read() == DATA  # filled; what follows are hits
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        starts = [(i * 16411) % (len(DATA) - 70_000) for i in range(96)]
        writer.write(b"".join(
            f"GET /v/t/seg.m4s HTTP/1.1\r\nHost: x\r\nRange: bytes={a}-{a + 65535}\r\n\r\n"
            .encode() for a in starts))
        await writer.drain()
        await asyncio.sleep(0.3)  # the edge meets a full buffer and stops reading
        for a in starts:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 206"), head
            assert f"Content-Range: bytes {a}-{a + 65535}/{len(DATA)}".encode() in head
            assert await asyncio.wait_for(reader.readexactly(65536), 10) == DATA[a:a + 65536]
        writer.close()
    finally:
        await edge_runner.cleanup()
        await runner.cleanup()


async def test_the_edge_picks_a_chain_by_sni(tmp_path: Path) -> None:
    """`tls_certs`: each further chain answers for its own names; others get the first."""
    ca = trustme.CA()
    first = issue(ca, tmp_path / "a", "video.example", "127.0.0.1")
    other = issue(ca, tmp_path / "b", "cdn.isp.example")
    ca_pem = ca_file(ca, tmp_path / "ca")
    settings = edge_settings(tmp_path, "http://127.0.0.1:1", auth="none", signing_keys="",
                             port=0, tls_port=0, tls_cert=first.cert, tls_key=first.key,
                             tls_certs=(f"{other.cert}:{other.key}",))
    edge_runner, url = await start_edge(make_app(settings), settings, shutdown_timeout=1.0)
    try:
        port = int(edge_runner.addresses[-1][1])
        assert url.startswith("http://") and port != int(url.rsplit(":", 1)[1])
        assert await peer_names(port, "cdn.isp.example", ca_pem) == "cdn.isp.example"
        assert "video.example" in await peer_names(port, "video.example", ca_pem)
        assert "video.example" in await peer_names(port, "unknown.example", ca_pem)
    finally:
        await edge_runner.cleanup()
