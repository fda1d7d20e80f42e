"""Signed URL tokens, pure: HMAC-SHA256 over (key id, expiry, title).

A token travels in the URL path, ``/s/{token}/{title}/{path}``, so that the relative URIs
inside HLS playlists inherit it without rewriting. Its text form is
``{key_id}.{expires}.{signature}``: path-safe (base64url, no padding) and short.

The key id lets steering and appliances rotate keys: steering signs with the newest key,
appliances accept every key they still hold. Verification compares in constant time and
says *why* a token failed (for the log), while the HTTP answer stays a bare 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from vcdn.errors import BadToken, ConfigError

_KID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_SIG_LEN: Final = 43  # base64url of 32 bytes without padding
_MAX_TOKEN: Final = 128


@dataclass(frozen=True, slots=True)
class Token:
    key_id: str
    expires: int
    signature: str


def _mac(key: bytes, key_id: str, expires: int, title: str) -> str:
    msg = f"vcdn1\n{key_id}\n{expires}\n{title}".encode()
    digest = hmac.new(key, msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(title: str, *, key_id: str, key: bytes, expires: int) -> str:
    """A token that lets its bearer fetch `title` until the Unix time `expires`."""
    if not _KID_RE.match(key_id):
        raise ValueError(f"key id {key_id!r} must be 1-32 characters of A-Z a-z 0-9 _ -")
    return f"{key_id}.{int(expires)}.{_mac(key, key_id, int(expires), title)}"


def parse(token: str) -> Token:
    """Split a token; raises BadToken for anything that is not one."""
    if len(token) > _MAX_TOKEN:
        raise BadToken("token is too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise BadToken("token does not have three dot-separated parts")
    key_id, expires_text, signature = parts
    if not _KID_RE.match(key_id):
        raise BadToken("token key id is malformed")
    if not expires_text.isascii() or not expires_text.isdigit() or len(expires_text) > 12:
        raise BadToken("token expiry is not a Unix time")
    if len(signature) != _SIG_LEN:
        raise BadToken("token signature has the wrong length")
    return Token(key_id, int(expires_text), signature)


def verify(token: str, title: str, keys: Mapping[str, bytes], now: float) -> Token:
    """Return the parsed token if it is valid for `title` at `now`; else raise BadToken."""
    parsed = parse(token)
    key = keys.get(parsed.key_id)
    if key is None:
        raise BadToken(f"token key id {parsed.key_id!r} is unknown")
    expected = _mac(key, parsed.key_id, parsed.expires, title)
    if not hmac.compare_digest(expected.encode(), parsed.signature.encode()):
        raise BadToken("token signature does not match this title and key")
    if parsed.expires < now:
        raise BadToken(f"token expired at {parsed.expires}")
    return parsed


def parse_keys(text: str) -> dict[str, bytes]:
    """``"k1:secret1,k2:secret2"`` → {"k1": b"secret1", ...}; the first is the signing key.

    Dict order is kept, so ``next(iter(keys))`` is the key to sign with.
    """
    keys: dict[str, bytes] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key_id, colon, secret = item.partition(":")
        if not colon or not _KID_RE.match(key_id) or len(secret) < 16:
            raise ConfigError(
                "Signing keys must look like 'keyid:secret[,keyid2:secret2]' with key ids of "
                "A-Z a-z 0-9 _ - and secrets of at least 16 characters."
            )
        keys[key_id] = secret.encode()
    if not keys:
        raise ConfigError("No signing key given; expected 'keyid:secret'.")
    return keys
