"""The TLS core: policy (versions, ALPN, resumption) seen by openssl and curl, SNI choice,
reloads that keep open connections, and verifying clients' one-line failures."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from tests.conftest import require_tool
from tests.vcdn.tls_helpers import ca_file, issue, peer_names, run, s_client
from vcdn.control_client import ControlClient
from vcdn.errors import ConfigError, UpstreamError
from vcdn.httplimits import HttpLimits
from vcdn.httpserve.server import start_service
from vcdn.tls import CertPair, TlsOptions, cert_pairs, pick
from vcdn.tls_io import CertWatch, client_context


def _app() -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "tls": request.secure})

    async def appliances(request: web.Request) -> web.Response:
        return web.json_response({"appliances": [], "heartbeat_interval": 10.0,
                                  "generated_at": 0.0})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/appliances", appliances)
    return app


CLOSE_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def _serve(tls: TlsOptions):  # type: ignore[no-untyped-def]
    return await start_service(_app(), "127.0.0.1", 0, HttpLimits(), tls)


def _port(url: str) -> int:
    return int(url.rpartition(":")[2])


@pytest.mark.parametrize(
    ("server_name", "names", "expected"),
    [
        (None, [("a.test",), ("b.test",)], 0),
        ("b.test", [("a.test",), ("b.test",)], 1),
        ("B.TEST.", [("a.test",), ("b.test",)], 1),
        ("x.b.test", [("a.test",), ("*.b.test",)], 1),
        ("y.x.b.test", [("a.test",), ("*.b.test",)], 0),  # a wildcard covers one label
        ("unknown.test", [("a.test",), ("b.test",)], 0),
        ("b.test", [("*.test",), ("b.test",)], 1),  # an exact name beats a wildcard
    ],
)
def test_pick_chooses_the_chain_by_sni(server_name, names, expected) -> None:  # type: ignore[no-untyped-def]
    assert pick(server_name, names) == expected


def test_cert_and_key_go_together_and_extra_pairs_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="go together"):
        cert_pairs(tmp_path / "c.pem", None)
    with pytest.raises(ConfigError, match="CERTFILE:KEYFILE"):
        cert_pairs(tmp_path / "c.pem", tmp_path / "k.pem", ["only-one.pem"])
    assert cert_pairs(None, None) == []


async def test_a_key_that_is_not_the_certificates_is_refused_at_start(
    tmp_path: Path, ca: trustme.CA
) -> None:
    a, b = issue(ca, tmp_path, "a.test"), issue(ca, tmp_path, "b.test")
    with pytest.raises(ConfigError, match="matching private key"):
        await _serve(TlsOptions(tls_cert=a.cert, tls_key=b.key))
    with pytest.raises(ConfigError, match="does not exist"):
        await _serve(TlsOptions(tls_cert=tmp_path / "nope.pem", tls_key=b.key))


async def test_versions_alpn_and_resumption_as_openssl_sees_them(
    tmp_path: Path, ca: trustme.CA
) -> None:
    leaf = issue(ca, tmp_path, "a.test", "127.0.0.1")
    cafile = ca_file(ca, tmp_path)
    runner, urls, _ = await _serve(TlsOptions(tls_cert=leaf.cert, tls_key=leaf.key))
    port = _port(urls[0])
    try:
        assert urls[0].startswith("https://")
        # TLS 1.0 and 1.1 offered for real (SECLEVEL=0 lets the client offer them): the
        # handshake fails (asyncio closes without flushing OpenSSL's protocol_version
        # alert, so the client may see either) and no cipher is agreed.
        for old in ("-tls1", "-tls1_1"):
            code, out = await s_client(port, old, "-cipher", "DEFAULT@SECLEVEL=0")
            assert code != 0 and "Cipher is (NONE)" in out, out
            assert "alert protocol version" in out or "unexpected eof" in out, out
        for version, shown in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            code, out = await s_client(port, version, "-alpn", "http/1.1", "-CAfile",
                                       str(cafile), "-servername", "a.test")
            assert code == 0, out
            assert f"Protocol  : {shown}" in out or f"New, {shown}" in out, out
            assert "ALPN protocol: http/1.1" in out, out
            assert "Verify return code: 0 (ok)" in out, out
        # TLS 1.2 suites are the intermediate list: no CBC, no RSA key exchange.
        code, out = await s_client(port, "-tls1_2", "-cipher", "AES128-SHA")
        assert code != 0, out
        code, out = await s_client(port, "-tls1_2")
        assert "Cipher    : ECDHE-" in out, out
        # A ticket from one handshake resumes the next (TLS 1.2 and 1.3).
        for version in ("-tls1_2", "-tls1_3"):
            session = tmp_path / f"session{version}"
            # One request, answered with Connection: close: the TLS 1.3 tickets that
            # follow the handshake are read before the connection ends.
            code, out = await s_client(port, version, "-sess_out", str(session), "-ign_eof",
                                       stdin=CLOSE_REQUEST)
            assert code == 0 and session.stat().st_size > 0, out
            code, out = await s_client(port, version, "-sess_in", str(session))
            assert "Reused, TLSv1." in out, out
    finally:
        await runner.cleanup()


async def test_sni_picks_the_certificate_and_curl_verifies_it(
    tmp_path: Path, ca: trustme.CA
) -> None:
    a = issue(ca, tmp_path, "a.test")
    b = issue(ca, tmp_path, "b.test", "*.b.test")
    cafile = ca_file(ca, tmp_path)
    tls = TlsOptions(tls_cert=a.cert, tls_key=a.key, tls_certs=(f"{b.cert}:{b.key}",),
                     tls_port=0)
    runner, urls, _ = await _serve(tls)
    plain, secure = urls
    port = _port(secure)
    try:
        assert plain.startswith("http://") and secure.startswith("https://")
        assert await peer_names(port, "a.test", cafile) == "a.test"
        assert await peer_names(port, "b.test", cafile) == "b.test,*.b.test"
        assert await peer_names(port, "x.b.test", cafile) == "b.test,*.b.test"
        assert await peer_names(port, None, cafile) == "a.test"  # no SNI: the default
        curl = require_tool("curl")
        code, out = await run(curl, "-sS", "--cacert", str(cafile), "--resolve",
                              f"x.b.test:{port}:127.0.0.1", f"https://x.b.test:{port}/healthz")
        assert code == 0 and '"tls": true' in out, out
        code, out = await run(curl, "-sS", f"{plain}/healthz")  # plain HTTP beside it
        assert code == 0 and '"tls": false' in out, out
        code, out = await run(curl, "-sS", "--resolve", f"a.test:{port}:127.0.0.1",
                              f"https://a.test:{port}/healthz")
        assert code == 60, out  # curl: the test CA is not in the system store
    finally:
        await runner.cleanup()


async def test_a_reload_serves_the_new_certificate_and_keeps_open_connections(
    tmp_path: Path, ca: trustme.CA
) -> None:
    first = issue(ca, tmp_path / "one", "a.test")
    live = CertPair(tmp_path / "live.crt", tmp_path / "live.key")
    shutil.copy(first.cert, live.cert)
    shutil.copy(first.key, live.key)
    cafile = ca_file(ca, tmp_path)
    runner, urls, store = await _serve(TlsOptions(tls_cert=live.cert, tls_key=live.key))
    assert store is not None
    watch = CertWatch(store, lambda: [live], interval=0.05)
    port = _port(urls[0])
    ctx = client_context(cafile)
    request = b"GET /healthz HTTP/1.1\r\nHost: a.test\r\n\r\n"
    try:
        # A keep-alive connection opened before the reload.
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                       server_hostname="a.test")
        writer.write(request)
        assert (await reader.readuntil(b"}")).startswith(b"HTTP/1.1 200")
        # A broken file (the key of another certificate) keeps the chain in service.
        other = issue(ca, tmp_path / "two", "b.test", "a.test")
        shutil.copy(other.cert, live.cert)
        assert not watch.check() and watch.failures == 1
        assert not watch.check() and watch.failures == 1  # said once, not every poll
        assert await peer_names(port, "a.test", cafile) == "a.test"
        # The matching key arrives: new handshakes get the new chain.
        shutil.copy(other.key, live.key)
        os.utime(live.key, None)
        assert watch.check() and watch.reloads == 1
        assert await peer_names(port, "a.test", cafile) == "b.test,a.test"
        # The connection opened before the reload still works, with its old certificate.
        writer.write(request)
        assert (await reader.readuntil(b"}")).startswith(b"HTTP/1.1 200")
        peer = writer.get_extra_info("peercert")
        assert [v for _, v in peer["subjectAltName"]] == ["a.test"]
        writer.close()
    finally:
        await runner.cleanup()


async def test_sighup_reloads_the_certificates(tmp_path: Path, ca: trustme.CA) -> None:
    a = issue(ca, tmp_path, "a.test")
    runner, _, store = await _serve(TlsOptions(tls_cert=a.cert, tls_key=a.key))
    assert store is not None
    watch = CertWatch(store, interval=60)
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), __import__("signal").SIGHUP)
        for _ in range(100):
            if watch.reloads:
                break
            await asyncio.sleep(0.02)
        assert watch.reloads == 1
    finally:
        task.cancel()
        await runner.cleanup()


async def test_clients_fail_in_one_line_naming_host_and_reason(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """Unknown CA, another name, plain HTTP: each a sentence, never a silent downgrade."""
    leaf = issue(ca, tmp_path, "control.test")
    runner, urls, _ = await _serve(TlsOptions(tls_cert=leaf.cert, tls_key=leaf.key, tls_port=0))
    plain, secure = urls
    port = _port(secure)
    cafile = ca_file(ca, tmp_path)
    try:
        async with ControlClient(secure, "t") as client:  # the system store only
            with pytest.raises(UpstreamError) as info:
                await client.list_appliances()
        message = str(info.value)
        assert message == (f"TLS to the control API at 127.0.0.1:{port} failed: its "
                           "certificate cannot be trusted: it is signed by an unknown CA.")
        async with ControlClient(secure, "t", ca_bundle=cafile) as client:
            with pytest.raises(UpstreamError) as info:
                await client.list_appliances()
        message = str(info.value)
        assert message.startswith(f"TLS to the control API at 127.0.0.1:{port} failed: its "
                                  "certificate is for another name"), message
        assert "\n" not in message
        plain_port = _port(plain)
        async with ControlClient(f"https://127.0.0.1:{plain_port}", "t",
                                 ca_bundle=cafile) as client:
            with pytest.raises(UpstreamError) as info:
                await client.list_appliances()
        assert str(info.value) == (f"TLS to the control API at 127.0.0.1:{plain_port} failed: "
                                   "it does not speak TLS there (plain HTTP?).")
        # The right CA and the right name: it works.
        ok = issue(ca, tmp_path / "ip", "127.0.0.1")
        await runner.cleanup()
        runner, urls, _ = await _serve(TlsOptions(tls_cert=ok.cert, tls_key=ok.key))
        async with ControlClient(urls[0], "t", ca_bundle=cafile) as client:
            listed = await client.list_appliances()
        assert listed.appliances == []
    finally:
        await runner.cleanup()


def test_a_missing_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        client_context(tmp_path / "nope.pem")


async def test_the_suites_accepted_are_exactly_mozilla_intermediate(tmp_path: Path) -> None:
    """Every TLS 1.2 suite this openssl knows, offered alone, to an RSA and an ECDSA chain:
    the server agrees to exactly the intermediate suites its key can sign for (ECDHE with
    AES-GCM or ChaCha20; the DHE ones need DH parameters, never loaded), and in TLS 1.3 to
    the three AEAD suites of that list and not CCM."""
    openssl = require_tool("openssl")
    ca = trustme.CA()
    rsa = issue(ca, tmp_path / "rsa", "rsa.test", key_type=trustme.KeyType.RSA)
    ec = issue(ca, tmp_path / "ec", "ec.test")
    runner, urls, _ = await _serve(TlsOptions(tls_cert=rsa.cert, tls_key=rsa.key,
                                              tls_certs=(f"{ec.cert}:{ec.key}",)))
    port = _port(urls[0])
    _, listed = await run(openssl, "ciphers", "-s", "-tls1_2", "ALL:@SECLEVEL=0")
    offered = [s for s in listed.strip().split(":") if not s.startswith("TLS_")]
    assert len(offered) > 40, listed

    async def accepted(server_name: str, *offer: str) -> bool:
        code, out = await s_client(port, "-servername", server_name, *offer)
        return code == 0 and "Cipher is (NONE)" not in out

    try:
        for name, kind in (("rsa.test", "RSA"), ("ec.test", "ECDSA")):
            answers = await asyncio.gather(*(accepted(
                name, "-tls1_2", "-cipher", f"{suite}:@SECLEVEL=0") for suite in offered))
            got = [suite for suite, ok in zip(offered, answers, strict=True) if ok]
            assert sorted(got) == sorted(f"ECDHE-{kind}-{s}" for s in (
                "AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305")), (name, got)
            for suite in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                          "TLS_CHACHA20_POLY1305_SHA256"):
                assert await accepted(name, "-tls1_3", "-ciphersuites", suite), (name, suite)
            assert not await accepted(name, "-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256")
    finally:
        await runner.cleanup()


async def test_ticket_keys_rotate_and_old_tickets_stop_resuming(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """The listener's ticket keys are ours, rotated while it runs: a TLS 1.2 or 1.3 ticket
    from before a rotation makes a full handshake, one from after resumes, and the tickets'
    lifetime hint is the rotation period. `CertWatch` rotates them when due."""
    leaf = issue(ca, tmp_path, "a.test")
    runner, urls, store = await _serve(TlsOptions(tls_cert=leaf.cert, tls_key=leaf.key))
    assert store is not None
    port = _port(urls[0])
    tickets = store.tickets
    assert tickets.active, tickets.reason
    first = tickets.current()
    assert len(first) == 80 and first != b"\0" * 80

    async def ticket(version: str, name: str) -> Path:
        session = tmp_path / f"{name}{version}"
        code, out = await s_client(port, version, "-sess_out", str(session), "-ign_eof",
                                   stdin=CLOSE_REQUEST)
        assert code == 0 and session.stat().st_size > 0, out
        assert f"TLS session ticket lifetime hint: {int(tickets.every)} (seconds)" in out, out
        return session

    async def resumes(version: str, session: Path) -> bool:
        code, out = await s_client(port, version, "-sess_in", str(session), "-ign_eof",
                                   stdin=CLOSE_REQUEST)
        assert code == 0 and ("Reused, TLSv1." in out or "New, TLSv1." in out), out
        return "Reused, TLSv1." in out

    try:
        for version in ("-tls1_2", "-tls1_3"):
            before = await ticket(version, "before")
            assert await resumes(version, before)
            assert tickets.rotate()
            assert tickets.current() not in (first, b"")
            assert not await resumes(version, before)  # a full handshake, not a failure
            after = await ticket(version, "after")
            assert await resumes(version, after)
        # Due rotations happen in the watch's loop.
        rotations, keys = tickets.rotations, tickets.current()
        tickets.every = 0.05
        watch = asyncio.create_task(CertWatch(store, interval=0.02).run())
        try:
            for _ in range(100):
                if tickets.rotations > rotations:
                    break
                await asyncio.sleep(0.02)
        finally:
            watch.cancel()
        assert tickets.rotations > rotations and tickets.current() != keys
    finally:
        await runner.cleanup()
