"""Signed URL tokens, pure: HMAC-SHA256 over (key id, expiry, title).

A token travels in the URL path, ``/s/{token}/{title}/{path}``, so that the relative URIs
inside HLS playlists inherit it without rewriting. Its text form is
``{key_id}.{expires}.{signature}``: path-safe (base64url, no padding) and short.

The key id lets steering and appliances rotate keys. Each key may carry a validity window
(`SigningKey.not_before`, `not_after`): signers use the first listed key whose window
holds now, verifiers refuse a key past its ``not_after`` (and one more than
`NOT_BEFORE_SKEW` seconds before its ``not_before``). Rotation is: list the new key first
with ``not_before`` = the switch time, keep the old one with ``not_after`` = the switch
time plus the longest token lifetime (the grace period).

Parsing is canonical: one spelling per token (expiry in decimal without leading zeros,
signature in unpadded base64url whose unused low bits are zero), so a token cannot be
varied to slip past caches, logs or rate limits keyed on its text. Verification compares
in constant time and says *why* a token failed (for the log), while the HTTP answer stays
a bare 403.
"""

from __future__ import annotations

import binascii
import hmac
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple

from vcdn.errors import BadToken, ConfigError

# Every pattern is matched whole (`re.fullmatch`): ``$`` would also match before a final
# newline, a second spelling of the same expiry.
_KID: Final = r"[A-Za-z0-9_-]{1,32}"
_KID_RE: Final = re.compile(_KID)
_SIG_LEN: Final = 43  # base64url of 32 bytes without padding
_MAX_TOKEN: Final = 128
#: Canonical expiry: "0" or decimal digits without a leading zero, at most 12 of them.
_EXPIRES: Final = r"0|[1-9][0-9]{0,11}"
_EXPIRES_RE: Final = re.compile(_EXPIRES)
#: 43 base64url characters carry 258 bits for 256: the last one's two low bits must be 0.
_SIG: Final = r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]"
_SIG_RE: Final = re.compile(_SIG)
#: A whole canonical token in one match (at most 89 characters, so never too long): what
#: `parse` accepts, checked in one call; the part-by-part checks only say why not.
_TOKEN_RE: Final = re.compile(rf"({_KID})\.({_EXPIRES})\.({_SIG})")
#: Standard base64 to base64url.
_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
#: A verifier accepts a key this many seconds before its not_before (clock skew).
NOT_BEFORE_SKEW: Final = 300.0


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    secret: bytes
    not_before: float = -math.inf
    not_after: float = math.inf

    def usable(self, now: float) -> bool:
        """May sign at `now`."""
        return self.not_before <= now <= self.not_after


class KeyRing(Mapping[str, bytes]):
    """Keys by id, in the order they were listed; a Mapping of id → secret."""

    __slots__ = ("_keys", "_macs")

    def __init__(self, keys: Iterable[SigningKey] = ()) -> None:
        self._keys = {k.key_id: k for k in keys}
        #: Each secret's HMAC state, keyed once: a verification copies it (`mac`), which
        #: costs about half of keying HMAC-SHA256 anew for every token not seen before.
        self._macs = {
            k.key_id: hmac.new(k.secret, digestmod="sha256") for k in self._keys.values()
        }

    def __getitem__(self, key_id: str) -> bytes:
        return self._keys[key_id].secret

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KeyRing) and list(self._keys.values()) == list(
            other._keys.values()
        )

    __hash__ = None  # type: ignore[assignment]

    def key(self, key_id: str) -> SigningKey | None:
        return self._keys.get(key_id)

    def signer(self, now: float) -> SigningKey | None:
        """The key to sign with at `now`: the first listed whose window holds now."""
        for k in self._keys.values():
            if k.usable(now):
                return k
        return None

    def sign_current(self, title: str, now: float, ttl: float) -> str | None:
        """A token for `title` signed with the key in service at `now` (`signer`), valid for
        `ttl` seconds but never past that key's not_after (the end of its rotation grace,
        after which no verifier accepts it); None when no key is in service."""
        signer = self.signer(now)
        if signer is None:
            return None
        expires = int(min(now + ttl, signer.not_after))
        return sign(title, key_id=signer.key_id, key=signer.secret, expires=expires)

    def mac(self, key_id: str, expires: int, title: str) -> bytes:
        """`_mac` with the key `key_id` of this ring (which must hold it)."""
        h = self._macs[key_id].copy()
        h.update(_message(key_id, expires, title))
        return _encode(h.digest())

    def valid_until(self, key_id: str) -> float:
        k = self._keys.get(key_id)
        return k.not_after if k is not None else -math.inf


class Token(NamedTuple):
    """A parsed token (a tuple: made for every token not seen before, at half the cost
    of a frozen dataclass)."""

    key_id: str
    expires: int
    signature: str


def _message(key_id: str, expires: int, title: str) -> bytes:
    return f"vcdn1\n{key_id}\n{expires}\n{title}".encode()


def _encode(digest: bytes) -> bytes:
    """Unpadded base64url, in two C calls: every token not seen before pays for it."""
    return binascii.b2a_base64(digest, newline=False)[:_SIG_LEN].translate(_URLSAFE)


def _mac(key: bytes, key_id: str, expires: int, title: str) -> bytes:
    """The signature, as its unpadded base64url bytes."""
    return _encode(hmac.digest(key, _message(key_id, expires, title), "sha256"))


def sign(title: str, *, key_id: str, key: bytes, expires: int) -> str:
    """A token that lets its bearer fetch `title` until the Unix time `expires`."""
    if not _KID_RE.fullmatch(key_id):
        raise ValueError(f"key id {key_id!r} must be 1-32 characters of A-Z a-z 0-9 _ -")
    return f"{key_id}.{int(expires)}.{_mac(key, key_id, int(expires), title).decode()}"


def parse(token: str) -> Token:
    """Split a token; raises BadToken for anything that is not one."""
    m = _TOKEN_RE.fullmatch(token)
    if m is not None:
        return Token(m[1], int(m[2]), m[3])
    _refuse(token)
    raise BadToken("token is malformed")  # not reached: `_refuse` names the reason


def _refuse(token: str) -> None:
    """Raise BadToken saying why `token` (which `_TOKEN_RE` refused) is no token."""
    if len(token) > _MAX_TOKEN:
        raise BadToken("token is too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise BadToken("token does not have three dot-separated parts")
    key_id, expires_text, signature = parts
    if not _KID_RE.fullmatch(key_id):
        raise BadToken("token key id is malformed")
    if not _EXPIRES_RE.fullmatch(expires_text):
        raise BadToken("token expiry is not a canonical Unix time")
    if len(signature) != _SIG_LEN:
        raise BadToken("token signature has the wrong length")
    if not _SIG_RE.fullmatch(signature):
        raise BadToken("token signature is not canonical base64url")


def verify(token: str, title: str, keys: Mapping[str, bytes], now: float) -> Token:
    """Return the parsed token if it is valid for `title` at `now`; else raise BadToken."""
    parsed = parse(token)
    if isinstance(keys, KeyRing):
        window = keys.key(parsed.key_id)
        if window is None:
            raise BadToken(f"token key id {parsed.key_id!r} is unknown")
        if now > window.not_after:
            raise BadToken(f"token key {parsed.key_id!r} expired at {window.not_after:.0f}")
        if now < window.not_before - NOT_BEFORE_SKEW:
            raise BadToken(
                f"token key {parsed.key_id!r} is not valid before {window.not_before:.0f}"
            )
        expected = keys.mac(parsed.key_id, parsed.expires, title)
    else:
        key = keys.get(parsed.key_id)
        if key is None:
            raise BadToken(f"token key id {parsed.key_id!r} is unknown")
        expected = _mac(key, parsed.key_id, parsed.expires, title)
    if not hmac.compare_digest(expected, parsed.signature.encode()):
        raise BadToken("token signature does not match this title and key")
    if parsed.expires < now:
        raise BadToken(f"token expired at {parsed.expires}")
    return parsed


def _time(text: str, what: str) -> float:
    """Unix seconds, or ISO 8601 with a zone (``2027-01-01T00:00:00Z``)."""
    try:
        return float(int(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ConfigError(
            f"Signing key {what} {text!r} must be Unix seconds or an ISO 8601 time with a "
            "zone, such as 2027-01-01T00:00:00Z."
        )
    return when.timestamp()


def parse_keys(text: str) -> KeyRing:
    """``"k2:secret2;not_before=T2,k1:secret1;not_after=T3"`` → a `KeyRing`, in order.

    Each item is ``keyid:secret`` with optional ``;not_before=TIME`` and ``;not_after=TIME``
    (Unix seconds or ISO 8601 with a zone). The first listed key valid now signs.
    """
    keys: list[SigningKey] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        head, *attrs = item.split(";")
        key_id, colon, secret = head.partition(":")
        if not colon or not _KID_RE.fullmatch(key_id) or len(secret) < 16:
            raise ConfigError(
                "Signing keys must look like 'keyid:secret[;not_before=T][;not_after=T]"
                "[,keyid2:secret2...]' with key ids of A-Z a-z 0-9 _ - and secrets of at "
                "least 16 characters (without ',' or ';')."
            )
        window = {"not_before": -math.inf, "not_after": math.inf}
        for attr in attrs:
            name, eq, value = attr.strip().partition("=")
            if not eq or name not in window:
                raise ConfigError(
                    f"Signing key {key_id!r} has {attr.strip()!r}; only not_before=TIME and "
                    "not_after=TIME may follow the secret."
                )
            window[name] = _time(value.strip(), name)
        if window["not_before"] >= window["not_after"]:
            raise ConfigError(f"Signing key {key_id!r} has not_before at or after not_after.")
        if any(k.key_id == key_id for k in keys):
            raise ConfigError(f"Signing key id {key_id!r} is listed twice.")
        keys.append(SigningKey(key_id, secret.encode(), **window))
    if not keys:
        raise ConfigError("No signing key given; expected 'keyid:secret'.")
    return KeyRing(keys)
