"""Fixtures for steering tests: a threaded fake control API and a real `vcdn steering`
subprocess on loopback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, ROOT
from tests.steering.fakes import FakeControl, appliance

GEOIP = DATA / "geoip"
CITY = GEOIP / "GeoIP2-City-Test.mmdb"
ASN = GEOIP / "GeoLite2-ASN-Test.mmdb"
KEYS = "k1:steering-test-secret-0001,k0:older-test-secret-0000"
LISTEN_RE = re.compile(r"DNS on 127\.0\.0\.1:(\d+) .* HTTP on http://127\.0\.0\.1:(\d+)")


def standard_appliances() -> list[dict[str, Any]]:
    """Four sites: an ISP with registered prefixes, the Bredband2 ASN (29518, Sweden),
    London and Seattle (near Milton, WA)."""
    return [
        appliance("isp-a", "isp", "http://127.0.1.1:8080", asn=64500, lat=48.9, lon=2.3,
                  prefixes=["81.2.69.0/24", "2001:db8:100::/48"]),
        appliance("isp-b", "isp", "http://127.0.1.2:8080", asn=64500, lat=48.9, lon=2.3,
                  prefixes=["81.2.69.0/24"]),
        appliance("se-1", "sto", "http://127.0.2.1:8080", asn=29518, lat=59.3, lon=18.1),
        appliance("lon-1", "lon", "http://127.0.3.1:8080", lat=51.5, lon=-0.1),
        appliance("lon-2", "lon", "http://127.0.3.2:8080", lat=51.5, lon=-0.1),
        appliance("sea-1", "sea", "http://127.0.4.1:8080", lat=47.6, lon=-122.3),
        appliance("sea-6", "sea", "http://[::1]:8080", lat=47.6, lon=-122.3),
    ]


@pytest.fixture
def control() -> Iterator[FakeControl]:
    fake = FakeControl().start()
    fake.appliances = standard_appliances()
    fake.titles = {"bbb", "sintel"}
    yield fake
    fake.stop()


@dataclass
class SteeringProc:
    proc: subprocess.Popen[str]
    dns_port: int
    http_port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def healthz(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.http}/healthz", timeout=5) as r:
            return json.loads(r.read())


def spawn_steering(control_url: str, *extra: str, env: dict[str, str] | None = None,
                   dns_port: int = 0) -> subprocess.Popen[str]:
    """`vcdn steering` on loopback with the test MaxMind data, its stdout piped."""
    full_env = {**os.environ, "VCDN_CONTROL_TOKEN": "steer-token", "VCDN_SIGNING_KEYS": KEYS,
                **(env or {})}
    cmd = [sys.executable, "-m", "vcdn.cli", "steering", "--control", control_url,
           "--zone", "cdn.example.", "--dns-port", str(dns_port), "--http-port", "0",
           "--geoip-city", str(CITY), "--geoip-asn", str(ASN), "--poll-interval", "0.2",
           "--origin-url", "http://127.0.0.1:9/origin", "--default-site", "lon",
           *(() if "--workers" in extra else ("--workers", "1")), *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def start_steering(control_url: str, *extra: str, env: dict[str, str] | None = None,
                   wait_view: bool = True) -> SteeringProc:
    proc = spawn_steering(control_url, *extra, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = LISTEN_RE.search(line)
    if not m:
        proc.kill()
        raise AssertionError(f"vcdn steering did not start: {line!r}")
    sp = SteeringProc(proc, int(m.group(1)), int(m.group(2)))
    deadline = time.monotonic() + 10
    while wait_view and time.monotonic() < deadline:
        if sp.healthz()["view"]["usable_appliances"] > 0:
            break
        time.sleep(0.05)
    return sp


def stop_steering(sp: SteeringProc) -> int:
    sp.proc.terminate()
    try:
        return sp.proc.wait(10)
    finally:
        if sp.proc.poll() is None:
            sp.proc.kill()


@pytest.fixture
def steering(control: FakeControl) -> Iterator[SteeringProc]:
    sp = start_steering(control.url)
    yield sp
    stop_steering(sp)


def wait_for(pred: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


__all__ = ["ASN", "CITY", "GEOIP", "KEYS", "Path", "SteeringProc", "start_steering",
           "stop_steering", "wait_for"]
