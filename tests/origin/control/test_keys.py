"""The key service: keys in the control database (both stores), handed only to a player
whose playback token is valid for the title, never written to a log."""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import replace
from typing import Any

import pytest

from origin.control.app import make_app
from origin.control.http_keys import b64url, clearkey_kids
from origin.control.settings import ControlSettings
from origin.control.store import ContentKey, open_store
from tests.origin.control.conftest import TOKENS, Api, FakeClock
from vcdn import tokens
from vcdn.errors import ClientError

SIGNING = "k1:key-service-test-secret-0123"
KEYS = tokens.parse_keys(SIGNING)
KID = "0123456789abcdef0123456789abcdef"
KEY = "f00dfacecafe0000b0a710ad5ea7beef"
OTHER_KID = "fedcba9876543210fedcba9876543210"


def token(title: str, ttl: float = 300, secret: bytes = KEYS["k1"], kid: str = "k1") -> str:
    return tokens.sign(title, key_id=kid, key=secret, expires=int(time.time() + ttl))


@pytest.fixture
async def keyed(aiohttp_client: Any, settings: ControlSettings, clock: FakeClock) -> Api:
    keyed = replace(settings, signing_keys=SIGNING)
    client = await aiohttp_client(make_app(keyed, clock=clock))
    return Api(client, clock, keyed)


async def put(api: Api, title: str = "t1", kid: str = KID, key: str = KEY,
              who: str | None = "packager", scheme: str = "aes-128") -> tuple[int, Any]:
    return await api.call("PUT", f"/api/v1/titles/{title}/keys/{kid}", who=who,
                          json={"scheme": scheme, "key": key})


async def test_both_stores_keep_keys_per_title_and_kid(db_url: str) -> None:
    store = await open_store(db_url)
    try:
        assert await store.put_key(ContentKey("t1", KID, "aes-128", KEY), 1.0) is True
        assert await store.put_key(ContentKey("t1", KID, "cenc", "ab" * 16), 2.0) is False
        assert await store.get_key("t1", KID) == ContentKey("t1", KID, "cenc", "ab" * 16)
        assert await store.get_key("t2", KID) is None
        assert await store.get_key("t1", OTHER_KID) is None
    finally:
        await store.close()
    assert KEY not in repr(ContentKey("t1", KID, "aes-128", KEY))


async def test_only_the_packager_and_operator_register_keys(keyed: Api) -> None:
    assert (await put(keyed, who=None))[0] == 401
    assert (await put(keyed, who="steering"))[0] == 403
    assert (await put(keyed, who="a1"))[0] == 403
    assert (await put(keyed, who="not-a-token-0123456789"))[0] == 401
    assert (await put(keyed))[0] == 201
    assert (await put(keyed, who="operator"))[0] == 200
    assert (await put(keyed, kid="XYZ"))[0] == 400
    assert (await put(keyed, key="00"))[0] == 400
    assert (await put(keyed, scheme="rot13"))[0] == 400
    status, _ = await keyed.call("PUT", f"/api/v1/titles/t1/keys/{KID}", who="packager",
                                 json={"scheme": "cenc", "key": KEY, "extra": 1})
    assert status == 400


async def test_a_valid_token_for_the_title_gets_the_raw_key(keyed: Api) -> None:
    await put(keyed)
    resp = await keyed.client.get(f"/k/{token('t1')}/t1/{KID}")
    assert resp.status == 200
    assert await resp.read() == bytes.fromhex(KEY)
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.content_type == "application/octet-stream"
    # A valid token asking for a key the title does not have: 404, no key.
    resp = await keyed.client.get(f"/k/{token('t1')}/t1/{OTHER_KID}")
    assert resp.status == 404 and bytes.fromhex(KEY) not in await resp.read()


def bad_tokens() -> dict[str, str]:
    good = token("t1")
    kid, expires, sig = good.split(".")
    return {
        "wrong title": token("t2"),
        "expired": token("t1", ttl=-10),
        "malformed": "not-a-token",
        "missing": "",
        "tampered expiry": f"{kid}.{int(expires) + 1}.{sig}",
        "unknown key id": token("t1", kid="k9"),
        "other secret": token("t1", secret=b"another-secret-entirely-0123"),
        "padded signature": f"{good}=",
    }


@pytest.mark.parametrize("case", list(bad_tokens()))
async def test_every_bad_token_gets_a_bare_403_for_key_and_license(
    keyed: Api, case: str
) -> None:
    await put(keyed)
    await put(keyed, title="t2")
    bad = bad_tokens()[case]
    resp = await keyed.client.get(f"/k/{bad}/t1/{KID}")
    assert resp.status == 403, case
    assert await resp.read() == b""
    resp = await keyed.client.post(f"/k/{bad}/t1/clearkey",
                                   json={"kids": [b64url(bytes.fromhex(KID))]})
    assert resp.status == 403, case
    assert await resp.read() == b""


async def test_without_signing_keys_the_key_service_refuses_everyone(api: Api) -> None:
    await put(api)
    resp = await api.client.get(f"/k/{token('t1')}/t1/{KID}")
    assert resp.status == 403 and await resp.read() == b""


async def test_clearkey_license_is_the_w3c_json_web_key_set(keyed: Api) -> None:
    await put(keyed, scheme="cenc")
    kid64 = b64url(bytes.fromhex(KID))
    resp = await keyed.client.post(f"/k/{token('t1')}/t1/clearkey",
                                   json={"kids": [kid64], "type": "temporary"})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body == {"keys": [{"kty": "oct", "kid": kid64,
                              "k": b64url(bytes.fromhex(KEY))}], "type": "temporary"}
    assert "=" not in body["keys"][0]["k"]
    assert base64.urlsafe_b64decode(body["keys"][0]["k"] + "==") == bytes.fromhex(KEY)
    assert resp.headers["Cache-Control"] == "no-store"
    # Junk, too many kids, kids of the wrong size: 400; unknown kids only: 404.
    url = f"/k/{token('t1')}/t1/clearkey"
    for junk in (b"{", b'{"kids": "x"}', b'{"kids": []}', b'{"kids": ["!!"]}',
                 b'{"kids": ["AAAA"]}', b'{"kids": ["' + kid64.encode() + b'"], "type": 3}'):
        assert (await keyed.client.post(url, data=junk)).status == 400, junk
    many = {"kids": [kid64] * 17}
    assert (await keyed.client.post(url, json=many)).status == 400
    other = {"kids": [b64url(bytes.fromhex(OTHER_KID))]}
    assert (await keyed.client.post(url, json=other)).status == 404
    # The browser's preflight of the JSON POST.
    resp = await keyed.client.options(url, headers={
        "Origin": "http://player.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert resp.status == 204
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]


def test_clearkey_kids_accepts_padded_and_unpadded_base64url() -> None:
    raw = bytes.fromhex(KID)
    padded = base64.urlsafe_b64encode(raw).decode()
    assert clearkey_kids({"kids": [padded, b64url(raw)]}) == [KID, KID]
    with pytest.raises(ClientError):
        clearkey_kids({"kids": [None]})


async def test_a_key_never_appears_in_any_log_record(
    keyed: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await put(keyed)
    await keyed.client.get(f"/k/{token('t1')}/t1/{KID}")
    await keyed.client.get(f"/k/{token('t2')}/t1/{KID}")
    await keyed.client.post(f"/k/{token('t1')}/t1/clearkey",
                            json={"kids": [b64url(bytes.fromhex(KID))]})
    assert any(r.getMessage() == "key_served" for r in caplog.records)
    forms = (KEY, KEY.upper(), b64url(bytes.fromhex(KEY)),
             base64.b64encode(bytes.fromhex(KEY)).decode())
    for record in caplog.records:
        text = f"{record.getMessage()} {getattr(record, 'fields', '')} {record.args}"
        assert not any(f in text for f in forms), record
    assert TOKENS["packager"] not in caplog.text


def test_a_running_control_reloads_its_signing_keys_on_sighup(tmp_path) -> None:
    """Rotation reaches the key service without a restart, as it does steering and edges."""
    import os
    import signal
    import urllib.error
    import urllib.request

    from tests.origin.control.conftest import BOOTSTRAP
    from tests.origin.control.server import start_control

    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("k1:key-service-test-secret-0123\n")
    settings = tmp_path / "control.toml"
    settings.write_text(f'signing_keys_file = "{keys_file}"\n')
    server = start_control(f"sqlite:///{tmp_path}/c.db", BOOTSTRAP, tmp_path,
                           "--config", str(settings))

    def status(url: str, **kw: Any) -> int:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, **kw), timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        body = b'{"scheme": "aes-128", "key": "' + KEY.encode() + b'"}'
        assert status(f"{server.url}/api/v1/titles/t1/keys/{KID}", data=body, method="PUT",
                      headers={"Authorization": f"Bearer {TOKENS['packager']}",
                               "Content-Type": "application/json"}) == 201
        new = b"k2:a-rotated-signing-secret-456"
        k2 = tokens.sign("t1", key_id="k2", key=new[3:], expires=int(time.time() + 60))
        assert status(f"{server.url}/k/{token('t1')}/t1/{KID}") == 200
        assert status(f"{server.url}/k/{k2}/t1/{KID}") == 403
        keys_file.write_text(new.decode() + "\n")
        os.kill(server.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while status(f"{server.url}/k/{k2}/t1/{KID}") != 200:
            assert time.monotonic() < deadline, "the new key never came into service"
            time.sleep(0.1)
        assert status(f"{server.url}/k/{token('t1')}/t1/{KID}") == 403  # k1 is gone
    finally:
        assert server.stop() == 0, (tmp_path / "control.stderr").read_text()
    assert KEY not in (tmp_path / "control.stderr").read_text()


@pytest.mark.parametrize("path", ["/k/t1/" + KID, "/k/%0A", "/k/a%0Ab/t1/" + KID, "/k/"])
async def test_any_other_key_service_path_is_a_bare_403(keyed: Api, path: str) -> None:
    for method in ("GET", "POST"):
        resp = await keyed.client.request(method, path)
        assert resp.status == 403, (method, path, resp.status)
        assert await resp.read() == b""
