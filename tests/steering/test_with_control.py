"""Steering against the real control API (`vcdn control` on SQLite): appliances register
and beat; one goes silent, the control plane marks it stale, and it leaves the answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.message
import dns.query
import pytest

from tests.conftest import ROOT
from tests.steering.conftest import start_steering, stop_steering, wait_for

STEER = "steering-token-0123456789"
OPERATOR = "operator-token-0123456789"
APPLIANCES = {"isp-a": "127.0.1.1", "isp-b": "127.0.1.2"}
TOKENS = ",".join([f"steering:{STEER}", f"operator:{OPERATOR}"] +
                  [f"appliance@{a}:{a}-token-0123456789" for a in APPLIANCES])
INTERVAL = 0.5  # heartbeat interval; stale after 3 silent intervals (control default)


def call(url: str, method: str, token: str, body: Any | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture
def real_control(tmp_path: Path) -> Iterator[str]:
    env = {**os.environ, "VCDN_CONTROL_TOKENS": TOKENS,
           "VCDN_CONTROL_HEARTBEAT_INTERVAL": str(INTERVAL)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcdn.cli", "control", "--db",
         f"sqlite:///{tmp_path / 'control.db'}", "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        pytest.fail(f"vcdn control did not start: {line!r}")
    url = line.split("listening on ")[1].split()[0]
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def beat(url: str, appliance: str) -> None:
    status, _ = call(f"{url}/api/v1/appliances/{appliance}/heartbeat", "PUT",
                     f"{appliance}-token-0123456789", {"state": "healthy"})
    assert status == 200


def ecs_answer(port: int, subnet: str) -> list[str]:
    q = dns.message.make_query("edge.cdn.example.", "A", use_edns=0,
                               options=[dns.edns.ECSOption.from_text(subnet)])
    m = dns.query.udp(q, "127.0.0.1", port=port, timeout=2)
    return sorted(rd.address for rrset in m.answer for rd in rrset)


def test_silent_appliance_leaves_answers_and_unknown_title_is_404(real_control: str) -> None:
    for app_id, host in APPLIANCES.items():
        status, _ = call(f"{real_control}/api/v1/enrollments", "POST", OPERATOR,
                         {"id": app_id, "site": "isp", "prefixes": ["81.2.69.0/24"]})
        assert status == 201
        reg = {"id": app_id, "site": "isp", "public_url": f"http://{host}:8080",
               "capacity_bytes": 2**30, "asn": 64500, "lat": 48.9, "lon": 2.3,
               "prefixes": ["81.2.69.0/24"]}
        status, _ = call(f"{real_control}/api/v1/appliances", "POST",
                         f"{app_id}-token-0123456789", reg)
        assert status in (200, 201)
        beat(real_control, app_id)
    sp = start_steering(real_control, env={"VCDN_CONTROL_TOKEN": STEER})
    try:
        assert sp.healthz()["view"]["usable_appliances"] == 2
        assert ecs_answer(sp.dns_port, "81.2.69.0/24") == ["127.0.1.1", "127.0.1.2"]
        # isp-b keeps beating; isp-a falls silent.
        t0 = time.monotonic()

        def gone() -> bool:
            beat(real_control, "isp-b")
            return ecs_answer(sp.dns_port, "81.2.69.0/24") == ["127.0.1.2"]

        assert wait_for(gone, 10)
        # Stale after 3 silent intervals; steering must follow within 2 more intervals.
        assert time.monotonic() - t0 < (3 + 2) * INTERVAL + 0.5
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{sp.http}/v1/playback/no-such-title", timeout=5)
        assert err.value.code == 404
    finally:
        stop_steering(sp)
