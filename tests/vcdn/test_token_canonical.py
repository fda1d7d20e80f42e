"""Token canonical form and key validity windows (`vcdn.tokens`), pure."""

from __future__ import annotations

import base64
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcdn.errors import BadToken, ConfigError
from vcdn.tokens import KeyRing, SigningKey, parse, parse_keys, sign, verify

SECRET = b"0123456789abcdef-one"
NOW = 1_800_000_000

kids = st.from_regex(r"\A[A-Za-z0-9_-]{1,32}\Z")
titles = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z")
expiries = st.integers(min_value=0, max_value=10**12 - 1)


@given(kids, titles, expiries)
def test_a_token_has_exactly_one_spelling(kid: str, title: str, expires: int) -> None:
    """parse∘sign is the identity on the text, and the parts re-form the same token."""
    tok = sign(title, key_id=kid, key=SECRET, expires=expires)
    p = parse(tok)
    assert f"{p.key_id}.{p.expires}.{p.signature}" == tok
    assert verify(tok, title, {kid: SECRET}, min(expires, NOW) - 1).key_id == kid


@given(kids, titles, expiries, st.integers(min_value=1, max_value=3))
def test_leading_zeros_in_the_expiry_are_refused(
    kid: str, title: str, expires: int, zeros: int
) -> None:
    """``k1.0123.sig`` is not another spelling of ``k1.123.sig``."""
    tok = sign(title, key_id=kid, key=SECRET, expires=expires)
    k, e, sig = tok.split(".")
    with pytest.raises(BadToken, match="canonical"):
        parse(f"{k}.{'0' * zeros}{e}.{sig}")


@given(kids, titles, expiries, st.integers(min_value=1, max_value=3))
def test_other_base64_spellings_of_the_signature_are_refused(
    kid: str, title: str, expires: int, low_bits: int
) -> None:
    """Setting the unused low bits of the last character decodes to the same MAC bytes,
    and is still refused; so are standard-alphabet and padded spellings."""
    tok = sign(title, key_id=kid, key=SECRET, expires=expires)
    k, e, sig = tok.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = sig[:-1] + alphabet[alphabet.index(sig[-1]) | low_bits]
    assert base64.urlsafe_b64decode(twin + "=") == base64.urlsafe_b64decode(sig + "=")
    for variant in (twin, sig.replace("-", "+").replace("_", "/"), sig[:-1] + "="):
        if variant == sig:
            continue
        with pytest.raises(BadToken):
            verify(f"{k}.{e}.{variant}", title, {kid: SECRET}, 0)


@pytest.mark.parametrize("expiry", ["0123", "+123", " 123", "1e3", "１２３", "-1", ""])
def test_odd_expiry_spellings(expiry: str) -> None:
    with pytest.raises(BadToken):
        parse(f"k1.{expiry}." + "A" * 43)


@pytest.mark.parametrize("where", ["key_id", "expires", "signature"])
def test_a_trailing_newline_is_no_second_spelling(where: str) -> None:
    """``k1.123\n.sig`` is not another spelling of ``k1.123.sig`` (a pattern's ``$`` also
    matches before a final newline), wherever the newline is."""
    tok = sign("t", key_id="k1", key=SECRET, expires=NOW + 60)
    parts = dict(zip(("key_id", "expires", "signature"), tok.split("."), strict=True))
    parts[where] += "\n"
    with pytest.raises(BadToken):
        verify(".".join(parts.values()), "t", {"k1": SECRET, "k1\n": SECRET}, NOW)


def test_a_key_id_with_a_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="key id"):
        sign("t", key_id="k1\n", key=SECRET, expires=NOW)
    with pytest.raises(ConfigError):
        parse_keys("k1\n:0123456789abcdef-one")


@given(st.text(alphabet="k1.09AEQw4Bz_-\n+/= ", max_size=100))
def test_parse_accepts_exactly_the_canonical_spelling_and_says_why_not(text: str) -> None:
    """The one-match parse and the part-by-part reasons agree: a text is either the very
    spelling of the token it parses to, or refused with its particular reason."""
    try:
        p = parse(text)
    except BadToken as exc:
        assert str(exc) != "token is malformed"
    else:
        assert f"{p.key_id}.{p.expires}.{p.signature}" == text


@given(kids, st.lists(st.tuples(titles, titles, expiries), min_size=1, max_size=5))
def test_a_ring_verifies_as_a_plain_mapping(
    kid: str, uses: list[tuple[str, str, int]]
) -> None:
    """A KeyRing keys each secret's HMAC once and copies it per token: it accepts and
    refuses exactly what the plain mapping (keyed anew each time) does, however often
    it was used before and for whichever titles."""
    ring, plain = KeyRing([SigningKey(kid, SECRET)]), {kid: SECRET}
    for signed_for, asked_for, expires in uses:
        tok = sign(signed_for, key_id=kid, key=SECRET, expires=expires)
        outcomes = []
        for keys in (ring, plain):
            try:
                outcomes.append(verify(tok, asked_for, keys, expires - 1))
            except BadToken as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1]
        assert isinstance(outcomes[0], str) == (signed_for != asked_for)


@given(kids, titles, expiries, st.integers(min_value=0, max_value=88))
def test_a_truncated_token_is_refused(kid: str, title: str, expires: int, cut: int) -> None:
    tok = sign(title, key_id=kid, key=SECRET, expires=expires)
    if cut < len(tok):
        with pytest.raises(BadToken):
            verify(tok[:cut], title, {kid: SECRET}, 0)


def test_a_key_past_not_after_is_refused_and_not_used() -> None:
    """After not_after the key verifies nothing and signs nothing."""
    ring = KeyRing([SigningKey("k1", SECRET, not_after=NOW)])
    tok = sign("t", key_id="k1", key=SECRET, expires=NOW + 3600)
    assert verify(tok, "t", ring, NOW - 1).key_id == "k1"
    with pytest.raises(BadToken, match="expired"):
        verify(tok, "t", ring, NOW + 1)
    assert ring.signer(NOW + 1) is None
    assert ring.valid_until("k1") == NOW


def test_a_key_before_not_before_does_not_sign() -> None:
    """Rotation: the new key is listed first but signs only from its not_before; the old
    one signs until then and verifies until its own not_after (the grace)."""
    ring = parse_keys(
        f"k2:0123456789abcdef-two;not_before={NOW},"
        f"k1:0123456789abcdef-one;not_after={NOW + 600}"
    )
    signer = ring.signer(NOW - 1)
    assert signer is not None and signer.key_id == "k1"
    signer = ring.signer(NOW)
    assert signer is not None and signer.key_id == "k2"
    old = sign("t", key_id="k1", key=ring["k1"], expires=NOW + 3600)
    assert verify(old, "t", ring, NOW + 599).key_id == "k1"
    with pytest.raises(BadToken):
        verify(old, "t", ring, NOW + 601)
    early = sign("t", key_id="k2", key=ring["k2"], expires=NOW + 3600)
    with pytest.raises(BadToken, match="not valid before"):
        verify(early, "t", ring, NOW - 3600)


def test_key_windows_parse_iso_and_unix_times() -> None:
    ring = parse_keys(
        "k1:0123456789abcdef-one;not_before=2027-01-01T00:00:00Z;not_after=1900000000"
    )
    key = ring.key("k1")
    assert key is not None
    assert (key.not_before, key.not_after) == (1798761600.0, 1900000000.0)
    plain = parse_keys("k1:0123456789abcdef-one").key("k1")
    assert plain is not None and plain.not_before == -math.inf and plain.not_after == math.inf


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("k1:0123456789abcdef;valid=1", "only not_before"),
        ("k1:0123456789abcdef;not_after=tomorrow", "Unix seconds or an ISO 8601"),
        ("k1:0123456789abcdef;not_after=2027-01-01T00:00:00", "ISO 8601"),
        ("k1:0123456789abcdef;not_before=20;not_after=10", "at or after"),
        ("k1:0123456789abcdef,k1:0123456789abcdeg", "twice"),
    ],
)
def test_bad_key_windows_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_keys(text)
