"""hls.js in headless Chromium plays over HTTPS from an https:// page: `vcdn up --tls`'s
cluster (local CA, pebble for ACME) with one appliance, whose video listener serves HTTPS
with the certificate pebble issued it over ACME, so steering hands out its https:// URL
and every segment comes from it. The browser trusts the served keys (the local CA's
server key, the appliance's ACME key) through --ignore-certificate-errors-spki-list
(their SPKI hashes only, never every certificate)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from onebox.cluster import Cluster, ClusterConfig
from onebox.demo import register, wait_for_fleet
from tests.conftest import require_tool
from tests.e2e.conftest import TITLE, Packaged, artifacts, seed_origin
from tests.e2e.test_browser import ARGS, CHROMIUM, check_browser_files, need, played
from vcdn.tls_io import client_connector

pytestmark = pytest.mark.slow


def spki_hash(pem: bytes) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of the leaf, as Chromium's flag wants it."""
    leaf = x509.load_pem_x509_certificate(pem)
    der = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


async def test_hlsjs_plays_over_https_from_an_https_page(tmp_path: Path,
                                                         packaged: Packaged) -> None:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        need("playwright", "`make install` installs the test extras")
    check_browser_files()
    require_tool("pebble")
    seed_origin(tmp_path, packaged)
    cluster = Cluster(ClusterConfig(data=tmp_path, appliances=1, tls=True, acme=True))
    try:
        await cluster.start()
        assert cluster.ca is not None
        async with aiohttp.ClientSession(
                connector=client_connector(cluster.ca_bundle)) as session:
            await register(session, cluster, TITLE)
            await wait_for_fleet(session, cluster)
        served = cluster.appliance_cert(cluster.slots[0]).read_bytes()
        issuer = x509.load_pem_x509_certificate(served).issuer.rfc4514_string()
        assert "Pebble" in issuer, issuer  # issued over ACME, not by the local CA
        spki = ",".join(spki_hash(pem) for pem in (cluster.ca.cert.read_bytes(), served))
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM,
                args=[*ARGS, f"--ignore-certificate-errors-spki-list={spki}"])
            try:
                page = await browser.new_page()
                requests: list[str] = []
                page.on("request", lambda r: requests.append(r.url))
                page.requests = requests  # type: ignore[attr-defined]
                page.console = []  # type: ignore[attr-defined]
                url = (f"{cluster.control_url}/player?title={TITLE}"
                       f"&steering={cluster.steering_url}")
                assert url.startswith("https://")
                response = await page.goto(url)
                assert response is not None and response.status == 200
                await played(page, 3.0)
                segments = [u for u in requests if u.endswith((".m4s", ".ts", "init.mp4"))]
                assert segments and all(u.startswith("https://") for u in segments), segments
                slot = cluster.slots[0]  # through the appliance's HTTPS listener
                assert {urlsplit(u).netloc for u in segments} == {f"{slot.host}:{slot.tls_port}"}
                # Nothing in clear: every network request of the page is HTTPS (MSE's blob:
                # URLs are local).
                assert not [u for u in requests if u.startswith("http://")], requests
                await page.screenshot(path=str(artifacts() / "player-https.png"))
            finally:
                await browser.close()
    finally:
        await cluster.stop()


def test_the_spki_hash_is_the_leafs(tmp_path: Path) -> None:
    from onebox import localca

    ca = localca.ensure(tmp_path, ["127.0.0.1"])
    other = localca.ensure(tmp_path / "other", ["127.0.0.1"])
    assert spki_hash(ca.cert.read_bytes()) != spki_hash(other.cert.read_bytes())

