"""The key service: content keys of encrypted titles, for players holding a playback token.

Two doors, one rule each:

* ``PUT /api/v1/titles/{id}/keys/{kid}`` (packager or operator bearer token): the packager
  stores a title's content key before it publishes the ciphertext. Keys live only in the
  control database, never on the origin or an appliance.
* ``/k/{token}/{title}/...`` (players): the same signed token as the appliance URLs
  (`vcdn.tokens`, the same HMAC keys), in the path, so a player that got its playlist from
  ``/s/{token}/{title}/...`` reaches the key with the token it already holds (the
  appliance redirects the playlist's relative key URI here, `edge.keyredirect`).
  ``GET /k/{token}/{title}/{kid}`` answers the 16 raw key bytes (HLS AES-128, RFC 8216
  §5.2); ``POST /k/{token}/{title}/clearkey`` answers a W3C ClearKey license (EME,
  "Clear Key" §9.1.3: ``{"kids": [...], "type"}`` in, ``{"keys": [{"kty": "oct", "k",
  "kid"}], "type"}`` out, base64url without padding).

A missing, malformed, expired or other-title token gets a bare 403 with an empty body:
the reason goes to the log (never the key), the answer says nothing a forger could use.
Key answers are ``Cache-Control: no-store`` so no shared cache keeps one, and carry CORS
headers so a browser player on another origin can read them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from typing import Any, Final

from aiohttp import web

from origin.control.http_common import CLOCK, STORE, read_raw, require, respond
from origin.control.store import ContentKey
from origin.control.validate import check_id
from vcdn import tokens
from vcdn.errors import BadToken, ClientError, NotFound
from vcdn.httpserve.cors import ALLOW_ORIGIN
from vcdn.logs import event
from vcdn.responses import ClearKey, ClearKeyLicense, KeyRegistered
from vcdn.schemas import encode
from vcdn.titles import is_valid_title
from vcdn.tokens import KeyRing

log = logging.getLogger("vcdn.control.keys")

WRITERS: Final = frozenset({"packager", "operator"})
SCHEMES: Final = ("aes-128", "cenc")
HEX32: Final = re.compile(r"^[0-9a-f]{32}$")
#: A ClearKey request names the key ids of one title: a handful, never thousands.
MAX_KIDS: Final = 16
MAX_LICENSE_BODY: Final = 4096
KEY_MEDIA_TYPE: Final = "application/octet-stream"
PREFIX: Final = "/k/"



class SigningKeys:
    """The URL-signing keys in service; replaced whole on a reload (`vcdn.keyreload`)."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    def set(self, ring: KeyRing) -> None:
        self.ring = ring


SIGNING_KEYS = web.AppKey("control_signing_keys", SigningKeys)

def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    """Base64url with or without padding; ValueError for anything else."""
    if not isinstance(text, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}={0,2}", text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
    except binascii.Error:
        raise ValueError("not base64url") from None


def clearkey_kids(body: Any) -> list[str]:
    """The hex key ids a ClearKey license request asks for; ClientError if it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("kids"), list):
        raise ClientError("A ClearKey license request is a JSON object with a 'kids' list.")
    kids = body["kids"]
    if not 1 <= len(kids) <= MAX_KIDS:
        raise ClientError(f"A ClearKey license request names 1 to {MAX_KIDS} key ids.")
    out = []
    for kid in kids:
        try:
            raw = unb64url(kid)
        except ValueError:
            raise ClientError("Each key id is 16 bytes in base64url.") from None
        if len(raw) != 16:
            raise ClientError("Each key id is 16 bytes in base64url.")
        out.append(raw.hex())
    return out


def clearkey_license(keys: list[ContentKey], kind: str) -> dict[str, Any]:
    """The W3C ClearKey license (a JSON Web Key set) for `keys`."""
    return encode(ClearKeyLicense([
        ClearKey("oct", b64url(bytes.fromhex(k.key)), b64url(bytes.fromhex(k.kid))) for k in keys
    ], kind))


async def put_key(request: web.Request) -> web.Response:
    who = await require(request, WRITERS)
    title = check_id(request.match_info["id"], "title")
    kid = request.match_info["kid"]
    if not HEX32.match(kid):
        raise ClientError("A key id is 32 lowercase hex digits (16 bytes).")
    raw = await read_raw(request, MAX_LICENSE_BODY)
    try:
        body = json.loads(raw)
    except ValueError:
        raise ClientError("The body is not valid JSON.") from None
    if not isinstance(body, dict) or set(body) != {"scheme", "key"}:
        raise ClientError("The body is {\"scheme\": \"aes-128\"|\"cenc\", \"key\": HEX32}.")
    scheme, key = body["scheme"], body["key"]
    if scheme not in SCHEMES:
        raise ClientError(f"Unknown scheme; schemes are {', '.join(SCHEMES)}.")
    if not isinstance(key, str) or not HEX32.match(key):
        raise ClientError("A key is 32 lowercase hex digits (16 bytes).")
    created = await request.app[STORE].put_key(
        ContentKey(title, kid, scheme, key), request.app[CLOCK]()
    )
    event(log, "key_registered", title=title, kid=kid, scheme=scheme, created=created,
          role=who.role)
    return respond(encode(KeyRegistered(title, kid, created)), status=201 if created else 200)


def _denied(request: web.Request, title: str, reason: str) -> web.Response:
    event(log, "key_denied", logging.INFO, title=title[:128], reason=reason,
          peer=request.remote)
    return web.Response(status=403, body=b"", headers=_headers())


def _headers() -> dict[str, str]:
    return {ALLOW_ORIGIN[0]: ALLOW_ORIGIN[1], "Cache-Control": "no-store"}


def _check_token(request: web.Request) -> tuple[str, str] | web.Response:
    """(token, title) if the path's token is valid for its title now, else the 403."""
    token, title = request.match_info["token"], request.match_info["title"]
    if not is_valid_title(title):
        return _denied(request, title, "title id is malformed")
    try:
        tokens.verify(token, title, request.app[SIGNING_KEYS].ring, time.time())
    except BadToken as exc:
        return _denied(request, title, str(exc))
    return token, title


async def get_key(request: web.Request) -> web.Response:
    checked = _check_token(request)
    if isinstance(checked, web.Response):
        return checked
    _, title = checked
    kid = request.match_info["kid"]
    key = await request.app[STORE].get_key(title, kid) if HEX32.match(kid) else None
    if key is None:
        raise NotFound(f"Title {title!r} has no key {kid[:40]!r}.")
    event(log, "key_served", title=title, kid=kid, peer=request.remote)
    return web.Response(body=bytes.fromhex(key.key), content_type=KEY_MEDIA_TYPE,
                        headers=_headers())


async def clearkey(request: web.Request) -> web.Response:
    checked = _check_token(request)
    if isinstance(checked, web.Response):
        return checked
    _, title = checked
    raw = await read_raw(request, MAX_LICENSE_BODY)
    try:
        body = json.loads(raw)
    except ValueError:
        raise ClientError("The license request is not valid JSON.") from None
    kids = clearkey_kids(body)
    kind = body.get("type", "temporary")
    if kind not in ("temporary", "persistent-license"):
        raise ClientError("'type' is 'temporary' or 'persistent-license'.")
    found = [k for k in [await request.app[STORE].get_key(title, kid) for kid in kids] if k]
    if not found:
        raise NotFound(f"Title {title!r} has none of the keys asked for.")
    event(log, "license_served", title=title, kids=[k.kid for k in found],
          peer=request.remote)
    resp = respond(clearkey_license(found, kind))
    resp.headers.update(_headers())
    return resp


async def other(request: web.Request) -> web.Response:
    """CORS preflight of a license POST (a JSON body makes the request non-simple); any
    other /k/ request (no token, a path of the wrong shape) gets the same bare 403."""
    if request.method != "OPTIONS":
        return _denied(request, "", "not a key or license URL")
    asked = request.headers.get("Access-Control-Request-Headers", "Content-Type")
    return web.Response(status=204, headers={
        ALLOW_ORIGIN[0]: ALLOW_ORIGIN[1],
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": asked[:200],
        "Access-Control-Max-Age": "86400",
    })
