"""`vcdn up --tls`: a local CA, every listener over HTTPS (control, origin, steering's HTTP
API, the appliances' admin API and HTTPS video port) but the appliances' plain video ports
(peers' fill, HTTP-01), every client verifying it (appliances, steering, appliance-ctl, the
demo's own client, curl), the appliances' certificates issued by pebble over ACME
(HTTP-01), and the title still plays, byte for byte, over HTTPS."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import socket
import ssl
import subprocess
import sys
import tomllib
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_tool
from tests.e2e.conftest import TITLE, Packaged, seed_origin
from tests.e2e.test_up import read_until, start_up, wait_gone
from vcdn.tls import certificate_names


@pytest.mark.slow
def test_up_tls_runs_control_and_steering_on_a_local_ca(tmp_path: Path,
                                                        packaged: Packaged) -> None:
    require_tool("pebble")
    seed_origin(tmp_path, packaged)
    summary = tmp_path / "summary.json"
    proc = start_up(tmp_path, "--tls", "--json", str(summary))
    try:
        out = read_until(proc, "running; press Ctrl-C")
        assert "PLAYED through the CDN" in out, out
        assert "TLS: control, origin, steering and the appliances' admin API over HTTPS, " \
               f"verified against the local CA {tmp_path.resolve() / 'tls' / 'ca.pem'}" in out, out
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
        check_every_listener(json.loads(summary.read_text())["listeners"], bundle, curl)
        check_appliance_ctl(tmp_path / "appliances" / "a1.toml", a1, bundle)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert wait_gone(proc.pid) == []


def check_every_listener(listeners: dict[str, str], bundle: Path, curl: str) -> None:
    """Every listener but the appliances' plain video ports is HTTPS, and its certificate
    verifies against the bundle for the address it is reached on (curl checks the name);
    the admin ports do not answer plain HTTP."""
    plain = {name for name in listeners if name.endswith(".video")}
    assert plain == {"a1.video", "a2.video"}, listeners
    secure = {name: url for name, url in listeners.items() if name not in plain}
    assert {"control", "origin", "steering", "a1.admin", "a2.admin", "a1.video_tls",
            "a2.video_tls"} <= set(secure), listeners
    for name, url in secure.items():
        assert url.startswith("https://"), (name, url)
        done = subprocess.run([curl, "-sS", "--fail", "-o", "/dev/null", "-w",
                               "%{http_code} %{ssl_verify_result}", "--cacert", str(bundle),
                               f"{url}/healthz"],
                              capture_output=True, text=True, timeout=10, check=False)
        assert (done.returncode, done.stdout) == (0, "200 0"), (name, url, done.stderr)
    for name in ("a1.admin", "a2.admin"):
        parts = urllib.parse.urlsplit(secure[name])
        assert parts.hostname and parts.port
        with socket.create_connection((parts.hostname, parts.port), timeout=5) as raw:
            raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := raw.recv(4096):
                answer += chunk
        assert not answer.startswith(b"HTTP/"), (name, answer[:200])
        done = subprocess.run([curl, "-sS", f"http://{parts.netloc}/healthz"],
                              capture_output=True, text=True, timeout=10, check=False)
        assert done.returncode != 0, (name, done.stdout)


def check_appliance_ctl(config: Path, settings: dict, bundle: Path) -> None:
    """appliance-ctl with the appliance's settings file speaks HTTPS to its admin API and
    verifies it: with the bundle it works; without it, one line naming the admin API's
    address and why."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCDN_")}

    def ctl(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vcdn.cli", "appliance-ctl", "status", "--config",
             str(config)], cwd=ROOT, env={**env, **extra}, capture_output=True, text=True,
            timeout=30, check=False)

    done = ctl(VCDN_CA_BUNDLE=str(bundle))
    assert done.returncode == 0, done.stderr
    assert settings["id"] in done.stdout, done.stdout
    done = ctl()
    assert done.returncode != 0
    where = f"{settings['admin_host']}:{settings['admin_port']}"
    assert done.stderr.strip().splitlines() == [
        f"vcdn appliance-ctl: TLS to the appliance admin API at {where} failed: its "
        "certificate cannot be trusted: it is signed by an unknown CA."], done.stderr
