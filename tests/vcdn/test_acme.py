"""ACME against a real ACME server (pebble on loopback), HTTP-01 validated for real against
our own listener: `vcdn cert obtain`, and the appliance's issuance, swap and failed renewal."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from onebox.procs import free_port
from tests.conftest import ROOT
from tests.pebble import pebble
from vcdn.acme_client import renew_due, split_identifiers
from vcdn.tls import certificate_names

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(("days", "due"), [(0, False), (59, False), (60, True), (89, True)])
def test_renewal_is_due_at_two_thirds_of_the_lifetime(days: int, due: bool) -> None:
    assert renew_due(T0, T0 + dt.timedelta(days=90), T0 + dt.timedelta(days=days)) is due


def test_addresses_are_ordered_as_ip_identifiers_and_names_as_dns() -> None:
    import ipaddress

    names, ips = split_identifiers(["cdn.example", "127.0.0.11", "::1"])
    assert names == ["cdn.example"]
    assert ips == [ipaddress.ip_address("127.0.0.11"), ipaddress.ip_address("::1")]


def test_vcdn_cert_obtain_from_pebble(tmp_path: Path) -> None:
    port = free_port()
    with pebble(tmp_path / "pebble", port) as acme:
        done = subprocess.run(
            [sys.executable, "-m", "vcdn.cli", "cert", "obtain", "--acme-directory",
             acme.directory, "--domain", "localhost", "--http-host", "127.0.0.1",
             "--http-port", str(port), "--cert", str(tmp_path / "out/tls.crt"),
             "--key", str(tmp_path / "out/tls.key"), "--ca-bundle", str(acme.ca_bundle)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "Wrote" in done.stdout
        pem = (tmp_path / "out/tls.crt").read_bytes()
        assert certificate_names(pem) == ("localhost",)
        assert (tmp_path / "out/tls.key").stat().st_mode & 0o077 == 0
        verify = subprocess.run(["openssl", "verify", "-CAfile", str(acme.root),
                                 "-untrusted", str(tmp_path / "out/tls.crt"),
                                 str(tmp_path / "out/tls.crt")],
                                capture_output=True, text=True, check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        # Without the CA of pebble's own listener, the ACME server is not trusted.
        done = subprocess.run(
            [sys.executable, "-m", "vcdn.cli", "cert", "obtain", "--acme-directory",
             acme.directory, "--domain", "localhost", "--http-host", "127.0.0.1",
             "--http-port", str(port), "--cert", str(tmp_path / "no/tls.crt"),
             "--key", str(tmp_path / "no/tls.key")],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
            env={k: v for k, v in os.environ.items() if k != "VCDN_CA_BUNDLE"})
        assert done.returncode == 1, done.stderr
        assert "could not read the directory" in done.stderr
        assert "CERTIFICATE_VERIFY_FAILED" in done.stderr
        assert not (tmp_path / "no/tls.crt").exists()
    # No ACME server: one line, exit 1.
    done = subprocess.run(
        [sys.executable, "-m", "vcdn.cli", "cert", "obtain", "--acme-directory",
         f"https://127.0.0.1:{free_port()}/dir", "--domain", "localhost", "--http-host",
         "127.0.0.1", "--http-port", "0", "--cert", str(tmp_path / "x.crt"), "--key",
         str(tmp_path / "x.key")], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False)
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) == 2, done.stderr  # where it listened; why
    assert lines[1].startswith("vcdn cert: ACME: could not read the directory at https://")


def test_the_appliance_renewer_is_due_at_two_thirds_and_at_once_without_a_certificate(
    tmp_path: Path,
) -> None:
    import trustme
    from prometheus_client import CollectorRegistry

    from appliance.acme import Renewer
    from appliance.settings import ApplianceSettings
    from vcdn.acme_client import validity
    from vcdn.acme_http import Challenges

    cert = tmp_path / "tls.crt"
    s = ApplianceSettings(
        id="a1", site="s1", public_url="http://127.0.0.1:8080", cache_dir=tmp_path,
        cache_capacity=1, control_url="http://127.0.0.1:1", origin_url="http://127.0.0.1:2",
        tls_cert=cert, tls_key=tmp_path / "tls.key", acme_directory="https://acme.test/dir",
        acme_domains=("a1.test",))
    renewer = Renewer(s, Challenges(), lambda: None, CollectorRegistry())
    assert renewer.due_in() == 0  # no certificate yet: issue at once
    leaf = trustme.CA().issue_cert("a1.test")
    cert.write_bytes(leaf.cert_chain_pems[0].bytes())
    not_before, not_after = validity(cert.read_bytes())
    life = not_after - not_before
    sixth = life.total_seconds() / 6  # from 1/2 to 2/3 of the lifetime
    assert renewer.due_in(not_before + life / 2) == pytest.approx(sixth, rel=1e-3)
    assert renewer.due_in(not_before + life * 0.7) == 0
