"""Signed URLs: /s/{token}/{title}/{path}; 403 with an empty body and the reason logged."""

from __future__ import annotations

import logging
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from tests.edge.conftest import TITLE, sign


@pytest.fixture
async def edge(origin: TestServer, make_edge) -> TestClient:  # type: ignore[no-untyped-def]
    return await make_edge(str(origin.make_url("")).rstrip("/"))


async def test_good_token_serves(edge: TestClient) -> None:
    """A valid token for the title serves the object."""
    resp = await edge.get(f"/s/{sign()}/{TITLE}/v1/index.m3u8")
    assert resp.status == 200
    assert (await resp.text()).startswith("#EXTM3U")


@pytest.mark.parametrize(
    ("case", "token", "reason"),
    [
        ("expired", lambda: sign(expires=time.time() - 10), "expired"),
        ("wrong title", lambda: sign("other-title"), "does not match"),
        ("unknown key id", lambda: sign(key_id="k9", key=b"0123456789abcdef-x"), "unknown"),
        ("forged signature", lambda: sign()[:-4] + "AAAA", "does not match"),
        ("garbage", lambda: "not-a-token", "three"),
    ],
)
async def test_bad_tokens_get_403_with_reason_in_log(
    edge: TestClient,
    caplog: pytest.LogCaptureFixture,
    case: str,
    token,
    reason: str,  # type: ignore[no-untyped-def]
) -> None:
    """Bad, expired, wrong-title or unknown-key tokens: 403, empty body, reason in the log."""
    caplog.set_level(logging.INFO, logger="vcdn.edge")
    resp = await edge.get(f"/s/{token()}/{TITLE}/v1/index.m3u8")
    assert resp.status == 403, case
    assert await resp.read() == b""
    logged = [r for r in caplog.records if r.getMessage() == "token_rejected"]
    assert logged and reason in logged[-1].fields["reason"]  # type: ignore[attr-defined]


async def test_rotated_key_still_accepted(edge: TestClient) -> None:
    """Tokens signed with an older key id the edge still holds keep working."""
    token = sign(key_id="k0", key=b"old-key-still-accepted")
    assert (await edge.get(f"/s/{token}/{TITLE}/v1/index.m3u8")).status == 200


async def test_relative_playlist_uris_keep_the_token(edge: TestClient) -> None:
    """A segment URI inside a playlist, resolved against the playlist URL, is still signed."""
    playlist_url = URL(f"/s/{sign()}/{TITLE}/v1/index.m3u8")
    text = await (await edge.get(playlist_url)).text()
    segment = next(line for line in text.splitlines() if line and not line.startswith("#"))
    resp = await edge.get(playlist_url.join(URL(segment)))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "video/mp4"


async def test_unsigned_paths_refused_when_tokens_required(edge: TestClient) -> None:
    """/v/ is not served by an appliance that requires tokens."""
    assert (await edge.get(f"/v/{TITLE}/v1/index.m3u8")).status == 404


async def test_unsigned_paths_allowed_in_labs(origin: TestServer, make_edge) -> None:  # type: ignore[no-untyped-def]
    """auth=none in appliance mode serves /v/{title}/{path} unsigned (labs only)."""
    edge = await make_edge(str(origin.make_url("")).rstrip("/"), auth="none")
    assert (await edge.get(f"/v/{TITLE}/v1/index.m3u8")).status == 200


def _twin(token: str) -> str:
    """The same token with the unused low bits of its signature's last character set:
    another base64 spelling of the same MAC bytes."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return token[:-1] + alphabet[alphabet.index(token[-1]) | 1]


@pytest.mark.parametrize(
    ("case", "spell", "reason"),
    [
        ("leading zero in the expiry", lambda t: t.replace(".", ".0", 1), "canonical"),
        ("another base64 spelling", _twin, "canonical"),
    ],
)
async def test_non_canonical_tokens_get_403(
    edge: TestClient, caplog: pytest.LogCaptureFixture, case: str, spell, reason: str  # type: ignore[no-untyped-def]
) -> None:
    """A valid token written another way is refused, on the fast path and the full one."""
    good = sign()
    assert (await edge.get(f"/s/{good}/{TITLE}/v1/index.m3u8")).status == 200
    caplog.set_level(logging.INFO, logger="vcdn.edge")
    resp = await edge.get(URL(f"/s/{spell(good)}/{TITLE}/v1/index.m3u8", encoded=True))
    assert resp.status == 403, case
    logged = [r for r in caplog.records if r.getMessage() == "token_rejected"]
    assert logged and reason in logged[-1].fields["reason"]  # type: ignore[attr-defined]


async def test_a_key_past_not_after_gets_403(origin: TestServer, make_edge) -> None:  # type: ignore[no-untyped-def]
    """A token of a key whose not_after has passed is refused, though the token itself
    has not expired; the key still in its window serves."""
    past = int(time.time()) - 5
    edge = await make_edge(
        str(origin.make_url("")).rstrip("/"),
        signing_keys=f"k2:0123456789abcdef-two,k1:0123456789abcdef-secret;not_after={past}",
    )
    old = sign(expires=time.time() + 600)
    assert (await edge.get(f"/s/{old}/{TITLE}/v1/index.m3u8")).status == 403
    new = sign(key_id="k2", key=b"0123456789abcdef-two", expires=time.time() + 600)
    assert (await edge.get(f"/s/{new}/{TITLE}/v1/index.m3u8")).status == 200
