"""`vcdn up --tls`: a local CA, control and steering over HTTPS, every client verifying it
(appliances, steering, the demo's own client, curl), and the title still plays."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.e2e.conftest import TITLE, Packaged, seed_origin
from tests.e2e.test_up import read_until, start_up, wait_gone
from vcdn.tls import certificate_names


@pytest.mark.slow
def test_up_tls_runs_control_and_steering_on_a_local_ca(tmp_path: Path,
                                                        packaged: Packaged) -> None:
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
