"""The appliance verifies the control plane: it registers (with its HTTPS URL) over TLS
when it trusts the CA (`ca_bundle`), and says in one line why not when it does not."""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import aiohttp
import trustme

from appliance import settings as settings_mod
from onebox.procs import free_port
from tests.appliance.conftest import (
    OPERATOR,
    appliance_toml,
    run_appliance,
    start_control,
    until,
)
from tests.vcdn.tls_helpers import ca_file, issue, run
from vcdn.tls import CertPair
from vcdn.tls_io import CertStore, listener, server_context


async def _appliance(tmp_path: Path, control_url: str, origin_url: str, **extra: object):  # type: ignore[no-untyped-def]
    path = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=free_port(), admin_port=free_port(),
        cache_dir=tmp_path / "cache", control_url=control_url, origin_url=origin_url,
        tls_url="https://a1.isp.test:8443", **extra)
    return await run_appliance(settings_mod.load(path, env={}))


async def test_appliance_registers_over_verified_tls(tmp_path: Path, origin) -> None:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    leaf = issue(ca, tmp_path / "certs", "127.0.0.1")
    control = await start_control(tmp_path / "c.db",
                                  ssl_context=server_context(CertPair(leaf.cert, leaf.key)))
    running = await _appliance(tmp_path, control.url, origin.url,
                               ca_bundle=str(ca_file(ca, tmp_path)))
    try:
        assert control.url.startswith("https://")
        await until(lambda: running.appliance.status.last_heartbeat)
        # The control plane now lists the appliance's HTTPS URL for steering.
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s, \
                s.get(f"{control.url}/api/v1/appliances",
                      headers={"Authorization": f"Bearer {OPERATOR}"}) as resp:
            listed = (await resp.json())["appliances"]
        assert [a["tls_url"] for a in listed] == ["https://a1.isp.test:8443"]
    finally:
        await running.stop()
        await control.stop()


async def test_unknown_ca_and_wrong_name_fail_in_one_line(tmp_path: Path, origin) -> None:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    for case, names, trust in (("unknown", ("127.0.0.1",), False),
                               ("mismatch", ("control.test",), True)):
        where = tmp_path / case
        leaf = issue(ca, where / "certs", *names)
        control = await start_control(where / "c.db",
                                      ssl_context=server_context(CertPair(leaf.cert, leaf.key)))
        extra = {"ca_bundle": str(ca_file(ca, where))} if trust else {}
        running = await _appliance(where, control.url, origin.url, **extra)
        try:
            status = running.appliance.status
            error = await until(lambda status=status: status.heartbeat_error)
            expected = ("its certificate cannot be trusted: it is signed by an unknown CA."
                        if case == "unknown" else "its certificate is for another name")
            assert error.startswith(f"register: TLS to the control API at 127.0.0.1:"
                                    f"{control.port} failed: {expected}"), error
            assert "\n" not in error and not status.registered
        finally:
            await running.stop()
            await control.stop()


def _store(pair: CertPair, client_ca: Path) -> CertStore:
    store = listener([pair], client_ca)
    assert store is not None
    return store


async def test_mutual_tls_binds_the_client_certificate_to_the_appliance_id(
    tmp_path: Path, origin  # type: ignore[no-untyped-def]
) -> None:
    """With a client CA on the control plane, the bound token alone is not enough: the
    appliance must present a certificate from that CA for its own id."""
    ca, clients, stranger = trustme.CA(), trustme.CA(), trustme.CA()
    leaf = issue(ca, tmp_path / "certs", "127.0.0.1")
    client_ca = ca_file(clients, tmp_path / "clients")
    own = issue(clients, tmp_path / "own", "a1")
    other = issue(clients, tmp_path / "other", "a2")
    forged = issue(stranger, tmp_path / "forged", "a1")
    cases = [
        ("own", own, ""),
        ("none", None, "must present its client certificate (common name 'a1', from the "
                       "control plane's client CA); it presented none."),
        ("other", other, "it presented one for 'a2'."),
        # A certificate from another CA fails the handshake on the server's side; under TLS
        # 1.3 the client learns it only as a reset of its first request.
        ("forged", forged, "the control API at "),
    ]
    for case, cert, error in cases:
        where = tmp_path / case
        control = await start_control(
            where / "c.db", tls_client_ca=client_ca,
            # The listener's own store, as `vcdn control` builds it: one chain, so the
            # handshake stays on the store's context and its client CA.
            ssl_context=_store(CertPair(leaf.cert, leaf.key), client_ca).context)
        extra: dict[str, object] = {"ca_bundle": str(ca_file(ca, where))}
        if cert is not None:
            extra |= {"tls_client_cert": str(cert.cert), "tls_client_key": str(cert.key)}
        running = await _appliance(where, control.url, origin.url, **extra)
        try:
            status = running.appliance.status
            if not error:
                await until(lambda status=status: status.last_heartbeat)
                assert status.registered
            else:
                seen = await until(lambda status=status: status.heartbeat_error)
                assert error in seen and "\n" not in seen, (case, seen)
                assert not status.registered
        finally:
            await running.stop()
            await control.stop()


async def test_appliance_ctl_verifies_an_https_admin_api(tmp_path: Path, origin, control) -> None:  # type: ignore[no-untyped-def]
    """admin_tls: the admin API speaks HTTPS; appliance-ctl trusts the settings file's CA
    and refuses another one in one line."""
    ca = trustme.CA()
    leaf = issue(ca, tmp_path / "certs", "127.0.0.1")
    running = await _appliance(tmp_path, control.url, origin.url, admin_tls=True,
                               tls_cert=str(leaf.cert), tls_key=str(leaf.key),
                               ca_bundle=str(ca_file(ca, tmp_path)))
    try:
        assert running.urls["admin"].startswith("https://127.0.0.1:")
        code, out = await run(sys.executable, "-m", "vcdn.cli", "appliance-ctl", "status",
                              "--config", str(tmp_path / "a.toml"))
        assert code == 0 and "a1" in out, out
        other = ca_file(trustme.CA(), tmp_path / "other")
        code, out = await run(sys.executable, "-m", "vcdn.cli", "appliance-ctl", "status",
                              "--config", str(tmp_path / "a.toml"), "--ca-bundle", str(other))
        assert code == 1, out
        assert out.strip() == (
            f"vcdn appliance-ctl: TLS to the appliance admin API at "
            f"{running.urls['admin'].removeprefix('https://')} failed: its certificate "
            "cannot be trusted: it is signed by an unknown CA."), out
    finally:
        await running.stop()
