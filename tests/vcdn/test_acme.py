"""ACME against a real ACME server (pebble on loopback), HTTP-01 validated for real against
our own listener: `vcdn cert obtain`, and the appliance's issuance, swap and failed renewal."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from tests.appliance.conftest import free_port
from tests.conftest import ROOT
from tests.pebble import pebble
from vcdn.acme_client import renew_due
from vcdn.tls import certificate_names

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(("days", "due"), [(0, False), (59, False), (60, True), (89, True)])
def test_renewal_is_due_at_two_thirds_of_the_lifetime(days: int, due: bool) -> None:
    assert renew_due(T0, T0 + dt.timedelta(days=90), T0 + dt.timedelta(days=days)) is due


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
