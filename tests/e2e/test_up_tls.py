"""`vcdn up --tls`: a local CA, control and steering over HTTPS, every client verifying it
(appliances, steering, the demo's own client, curl), the appliances' certificates issued
by pebble over ACME (HTTP-01), and the title still plays, byte for byte, over HTTPS."""

from __future__ import annotations

import hashlib
import json
import posixpath
import socket
import ssl
import subprocess
import tomllib
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.e2e.conftest import TITLE, Packaged, seed_origin
from tests.e2e.test_up import read_until, start_up, wait_gone
from vcdn.tls import certificate_names


@pytest.mark.slow
def test_up_tls_runs_control_and_steering_on_a_local_ca(tmp_path: Path,
                                                        packaged: Packaged) -> None:
    require_tool("pebble")
    seed_origin(tmp_path, packaged)
    proc = start_up(tmp_path, "--tls")
    try:
        out = read_until(proc, "running; press Ctrl-C")
        assert "PLAYED through the CDN" in out, out
        assert f"TLS: control and steering over HTTPS, verified against the local CA " \
               f"{tmp_path.resolve() / 'tls' / 'ca.pem'}" in out, out
        control = out.split("control:    ")[1].split("/api/v1")[0]
        steering = out.split("playback:   ")[1].split("/v1/playback")[0]
        assert control.startswith("https://127.0.0.1:") and steering.startswith("https://")
        ca = tmp_path / "tls" / "ca.pem"
        assert "127.0.0.10" in certificate_names((tmp_path / "tls" / "server.pem").read_bytes())
        bundle = tmp_path.resolve() / "tls" / "bundle.pem"
        assert "TLS: the appliances' certificates came from ACME (pebble at https://" in out
        assert f"every client trusts {bundle}" in out, out
        assert f"TLS: appliance certificates came from ACME (pebble, HTTP-01); trust {bundle}" \
            in out, out
        assert "First steered URL, served by a" in out, out
        # The appliance serves a certificate from pebble: it verifies against pebble's
        # root alone, for the appliance's own address, and pebble's CA issued it.
        root = tmp_path / "tls" / "pebble-root.pem"
        a1 = tomllib.loads((tmp_path / "appliances" / "a1.toml").read_text())
        only_pebble = ssl.create_default_context(cafile=str(root))
        with socket.create_connection((a1["host"], a1["tls_port"]), timeout=5) as raw, \
                only_pebble.wrap_socket(raw, server_hostname=a1["host"]) as tls:
            cert = tls.getpeercert()
        issuer = dict(pair[0] for pair in cert["issuer"])
        assert "Pebble" in issuer["commonName"], cert
        assert ("IP Address", a1["host"]) in cert["subjectAltName"], cert
        # A segment fetched over HTTPS through an appliance (the URL steering hands out)
        # is the packaged one, byte for byte.
        with urllib.request.urlopen(f"{steering}/v1/playback/{TITLE}", timeout=10,
                                    context=ssl.create_default_context(cafile=str(bundle))
                                    ) as resp:
            first = json.loads(resp.read())["urls"][0]
        assert first.startswith("https://127.0.0.1") and "/master.m3u8" in first, first

        def get(url: str) -> bytes:
            with urllib.request.urlopen(url, timeout=10, context=only_pebble) as resp:
                return resp.read()

        base = first.rsplit("/", 1)[0]
        variant = next(ln for ln in get(first).decode().splitlines()
                       if ln and not ln.startswith("#"))
        segment = next(ln for ln in get(f"{base}/{variant}").decode().splitlines()
                       if ln and not ln.startswith("#"))
        path = posixpath.normpath(posixpath.join(posixpath.dirname(variant), segment))
        body = get(f"{base}/{path}")
        assert hashlib.sha256(body).hexdigest() == packaged.sha[path], path
        curl = require_tool("curl")
        for url in (f"{control}/healthz", f"{steering}/v1/playback/{TITLE}"):
            done = subprocess.run([curl, "-sS", "--fail", "--cacert", str(ca), url],
                                  capture_output=True, text=True, timeout=10, check=False)
            assert done.returncode == 0, done.stderr
        # Without the CA, curl refuses the same server (exit 60: unknown issuer).
        done = subprocess.run([curl, "-sS", f"{control}/healthz"], capture_output=True,
                              text=True, timeout=10, check=False)
        assert done.returncode == 60, done.stderr
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert wait_gone(proc.pid) == []
