"""HTTPS through steering: steering verifies the control plane's certificate (a test CA via
VCDN_CA_BUNDLE), and an appliance that registered an HTTPS URL is handed out as https://
by the playback API and answered by its HTTPS host's address in DNS."""

from __future__ import annotations

import json
import ssl
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.origin.control.test_tls_cli import _start
from tests.steering.conftest import start_steering, stop_steering, wait_for
from tests.steering.fakes import FakeControl, appliance
from tests.steering.test_http_api import ISP_IP, make_client
from tests.steering.test_with_control import ecs_answer
from tests.vcdn.tls_helpers import ca_file, issue

STEER = "steering-token-0123456789"
OPERATOR = "operator-token-0123456789"
TOKENS = ",".join([f"steering:{STEER}", f"operator:{OPERATOR}",
                   "appliance@isp-a:isp-a-token-0123456789",
                   "appliance@isp-b:isp-b-token-0123456789"])


def _call(url: str, method: str, token: str, ctx: ssl.SSLContext, body: Any = None) -> int:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
        return resp.status


@pytest.mark.slow
def test_steering_verifies_control_and_hands_out_https_urls(tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = issue(ca, tmp_path, "127.0.0.1")
    cafile = ca_file(ca, tmp_path)
    ctx = ssl.create_default_context(cafile=str(cafile))
    proc, (control,) = _start(tmp_path, "--tls-cert", str(leaf.cert), "--tls-key",
                              str(leaf.key), tokens=TOKENS)
    try:
        assert control.startswith("https://")
        for app_id, public, secure in (
            ("isp-a", "http://127.0.1.1:8080", "https://127.0.1.3:8443"),
            ("isp-b", "http://127.0.1.2:8080", ""),
        ):
            assert _call(f"{control}/api/v1/enrollments", "POST", OPERATOR, ctx,
                         {"id": app_id, "site": "isp", "prefixes": ["81.2.69.0/24"]}) == 201
            reg = {"id": app_id, "site": "isp", "public_url": public, "tls_url": secure,
                   "capacity_bytes": 2**30, "asn": 64500, "lat": 48.9, "lon": 2.3,
                   "prefixes": ["81.2.69.0/24"]}
            token = f"{app_id}-token-0123456789"
            assert _call(f"{control}/api/v1/appliances", "POST", token, ctx, reg) == 201
            assert _call(f"{control}/api/v1/appliances/{app_id}/heartbeat", "PUT", token,
                         ctx, {"state": "healthy"}) == 200
        # Without the test CA steering cannot trust the control plane: no view, and
        # the reason in one line on /healthz.
        bare = start_steering(control, env={"VCDN_CONTROL_TOKEN": STEER}, wait_view=False)
        try:
            error = bare.healthz()["control_error"]
        finally:
            stop_steering(bare)
        assert error.startswith("TLS to the control API at 127.0.0.1:"), error
        assert "unknown CA" in error and "\n" not in error
        sp = start_steering(control, env={"VCDN_CONTROL_TOKEN": STEER,
                                          "VCDN_CA_BUNDLE": str(cafile)})
        try:
            assert wait_for(lambda: sp.healthz()["view"]["usable_appliances"] == 2, 10)
            # DNS sends clients to the HTTPS host of isp-a, the plain one of isp-b.
            assert ecs_answer(sp.dns_port, "81.2.69.0/24") == ["127.0.1.2", "127.0.1.3"]
        finally:
            stop_steering(sp)
    finally:
        proc.terminate()
        proc.wait(10)


async def test_playback_hands_out_the_https_url_when_the_appliance_has_one(
    aiohttp_client: Any, control: FakeControl
) -> None:
    control.appliances = [
        appliance("isp-a", "isp", "http://127.0.1.1:8080", asn=64500, lat=48.9, lon=2.3,
                  prefixes=["81.2.69.0/24"]) | {"tls_url": "https://a.isp.test:8443"},
        appliance("isp-b", "isp", "http://127.0.1.2:8080", asn=64500, lat=48.9, lon=2.3,
                  prefixes=["81.2.69.0/24"]),
    ]
    client, _ = await make_client(aiohttp_client, control)
    r = await client.get("/v1/playback/bbb", headers={"X-Forwarded-For": ISP_IP})
    assert r.status == 200
    body = await r.json()
    bases = sorted(u.split("/s/")[0] for u in body["urls"] if "/s/" in u)
    assert bases == ["http://127.0.1.2:8080", "https://a.isp.test:8443"], body
    dash = sorted(u.split("/s/")[0] for u in body["dash"] if "/s/" in u)
    assert dash == bases
