"""Key URIs of encrypted titles: the appliance checks the token and redirects to the key
service with it; it never serves or caches a key itself."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer

from edge.keyredirect import key_location
from tests.edge.conftest import TITLE, sign

KID = "0123456789abcdef0123456789abcdef"
KEY_SERVICE = "https://keys.example.test"


def test_only_key_paths_are_redirected() -> None:
    assert key_location(KEY_SERVICE + "/", "tok", "t", f"keys/{KID}") == (
        f"{KEY_SERVICE}/k/tok/t/{KID}")
    assert key_location(KEY_SERVICE, "tok", "t", "keys/clearkey") == (
        f"{KEY_SERVICE}/k/tok/t/clearkey")
    for rest in (f"keys/{KID.upper()}", f"keys/{KID}/x", "keys/", "240p/keys/" + KID,
                 f"keys/{KID}0", "keys/../x"):
        assert key_location(KEY_SERVICE, "tok", "t", rest) is None, rest
    assert key_location("", "tok", "t", f"keys/{KID}") is None


async def test_a_signed_key_uri_is_a_307_to_the_key_service(origin: TestServer,
                                                           make_edge) -> None:
    edge = await make_edge(str(origin.make_url("")).rstrip("/"), key_service=KEY_SERVICE)
    token = sign()
    resp = await edge.get(f"/s/{token}/{TITLE}/keys/{KID}", allow_redirects=False)
    assert resp.status == 307
    assert resp.headers["Location"] == f"{KEY_SERVICE}/k/{token}/{TITLE}/{KID}"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    # The license POST takes the same door; any other POST is still refused.
    resp = await edge.post(f"/s/{token}/{TITLE}/keys/clearkey", data=b"{}",
                           allow_redirects=False)
    assert resp.status == 307 and resp.headers["Location"].endswith("/clearkey")
    resp = await edge.post(f"/s/{token}/{TITLE}/v1/index.m3u8", allow_redirects=False)
    assert resp.status == 405


@pytest.mark.parametrize("token", ["junk", "k1.1.AAAA", ""])
async def test_a_bad_token_gets_403_and_no_location(origin: TestServer, make_edge,
                                                   token: str) -> None:
    edge = await make_edge(str(origin.make_url("")).rstrip("/"), key_service=KEY_SERVICE)
    for method in ("GET", "POST"):
        resp = await edge.request(method, f"/s/{token}/{TITLE}/keys/{KID}",
                                  allow_redirects=False)
        assert resp.status in (403, 404), (method, resp.status)
        assert "Location" not in resp.headers
    resp = await edge.get(f"/s/{sign('other')}/{TITLE}/keys/{KID}", allow_redirects=False)
    assert resp.status == 403 and "Location" not in resp.headers
