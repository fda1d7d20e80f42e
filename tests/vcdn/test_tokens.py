"""Signed URL tokens: a token verifies only for its title, key and unexpired time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcdn.errors import BadToken, ConfigError
from vcdn.tokens import parse, parse_keys, sign, verify

KEYS = {"k1": b"0123456789abcdef-one", "k2": b"0123456789abcdef-two"}
NOW = 1_800_000_000


def test_round_trip() -> None:
    """A fresh token for a title verifies for that title."""
    tok = sign("t1", key_id="k1", key=KEYS["k1"], expires=NOW + 60)
    assert verify(tok, "t1", KEYS, NOW).key_id == "k1"


@pytest.mark.parametrize(
    ("token_title", "check_title", "expires", "keys", "reason"),
    [
        ("t1", "t2", NOW + 60, KEYS, "signature"),
        ("t1", "t1", NOW - 1, KEYS, "expired"),
        ("t1", "t1", NOW + 60, {"k2": KEYS["k2"]}, "unknown"),
        ("t1", "t1", NOW + 60, {"k1": b"another-secret-of-16+"}, "signature"),
    ],
)
def test_rejections_say_why(token_title: str, check_title: str, expires: int,
                            keys: dict[str, bytes], reason: str) -> None:
    """Wrong title, expiry, unknown key id and wrong secret are each refused with a reason."""
    tok = sign(token_title, key_id="k1", key=KEYS["k1"], expires=expires)
    with pytest.raises(BadToken, match=reason):
        verify(tok, check_title, keys, NOW)


@pytest.mark.parametrize(
    "token",
    ["", "a.b", "k1.123.", "k1.notanumber." + "A" * 43, "k!.1." + "A" * 43, "k1.1." + "A" * 42,
     "k1.1." + "A" * 43 + ".x", "x" * 500, "k1.1234567890123." + "A" * 43],
)
def test_malformed_tokens(token: str) -> None:
    """Anything that is not a token is BadToken, never another exception."""
    with pytest.raises(BadToken):
        verify(token, "t1", KEYS, NOW)


def test_rotation_by_key_id() -> None:
    """Tokens signed with an older key verify while that key is still held."""
    old = sign("t", key_id="k2", key=KEYS["k2"], expires=NOW + 5)
    assert verify(old, "t", KEYS, NOW).key_id == "k2"
    with pytest.raises(BadToken):
        verify(old, "t", {"k1": KEYS["k1"]}, NOW)


def test_token_is_path_safe() -> None:
    tok = sign("t", key_id="k1", key=KEYS["k1"], expires=NOW)
    assert "/" not in tok and "%" not in tok and "+" not in tok and "=" not in tok
    assert parse(tok).expires == NOW


def test_parse_keys_keeps_order_and_rejects_junk() -> None:
    keys = parse_keys("new:0123456789abcdefXX, old:0123456789abcdefYY")
    assert list(keys) == ["new", "old"]
    for bad in ["", "nocolon", "k:short", "bad id:0123456789abcdefXX"]:
        with pytest.raises(ConfigError):
            parse_keys(bad)


@given(title=st.text(min_size=1, max_size=40), other=st.text(min_size=1, max_size=40),
       ttl=st.integers(-100, 100), kid=st.sampled_from(["k1", "k2"]))
def test_token_verifies_only_for_own_title_key_and_time(title: str, other: str, ttl: int,
                                                        kid: str) -> None:
    """Property: verification succeeds iff same title, a held key, and not yet expired."""
    tok = sign(title, key_id=kid, key=KEYS[kid], expires=NOW + ttl)
    for check_title in (title, other):
        ok = check_title == title and ttl >= 0
        try:
            verify(tok, check_title, KEYS, NOW)
            assert ok
        except BadToken:
            assert not ok
