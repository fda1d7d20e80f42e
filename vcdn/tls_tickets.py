"""Session ticket keys of a TLS listener, drawn by us and rotated while it runs.

OpenSSL encrypts TLS 1.2 and 1.3 session tickets with keys it draws once per context, and a
listener's context lives as long as its socket: left alone, one key would protect every
ticket for the life of the process, so a key read from memory once would decrypt every
session since start. Python's `ssl` (3.11 to 3.13) has no binding for setting them
(``SSL_CTX_set_tlsext_ticket_keys``), so we call libssl ourselves: the ``_ssl`` module's own
libssl (the same library, hence the same ``SSL_CTX`` layout) through `ctypes`, on the
``SSL_CTX *`` that CPython keeps right after the object header of an `ssl.SSLContext`. That
pointer is checked before any use (libssl must report the very options `ssl` reports for the
context); if anything does not match, rotation is off and `support()` says why, and OpenSSL's
own keys stay in service.

Rotation is a switch: OpenSSL holds one key set here, so a ticket issued before a rotation no
longer resumes and its client makes one full handshake. The tickets' lifetime hint is set to
the rotation period, so well-behaved clients drop them about when they stop working. Keeping a
previous key for decryption would need a ticket key callback, a Python call on every
handshake, which costs more than the occasional full handshake it saves.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import ssl
import time
from dataclasses import dataclass
from typing import Final

from vcdn.logs import event

log = logging.getLogger("vcdn.tls")

#: How often a listener draws new ticket keys (and the tickets' lifetime hint).
ROTATE_SECONDS: Final = 3600.0
#: <openssl/ssl.h>: SSL_CTRL_SET/GET_TLSEXT_TICKET_KEYS; 16 bytes of key name, 32 of
#: HMAC secret, 32 of AES key.
_SET_KEYS: Final = 59
_GET_KEYS: Final = 58
KEY_BYTES: Final = 80


@dataclass(frozen=True)
class Support:
    ok: bool
    reason: str = ""


@functools.cache
def _libssl() -> ctypes.CDLL:
    lib = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined]  # its libssl's symbols
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    lib.SSL_CTX_set_timeout.restype = ctypes.c_long
    lib.SSL_CTX_set_timeout.argtypes = [ctypes.c_void_p, ctypes.c_long]
    return lib


def _pointer(lib: ctypes.CDLL, ctx: ssl.SSLContext) -> int | None:
    """The context's ``SSL_CTX *``, or None when it is not where CPython keeps it."""
    address = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not address or lib.SSL_CTX_get_options(address) != ctx.options:
        return None
    return address


@functools.cache
def support() -> Support:
    """Whether this interpreter and libssl let us set a context's ticket keys (the same
    answer for the whole process: probed once, not for every listener and reload)."""
    if platform.python_implementation() != "CPython":
        return Support(False, f"{platform.python_implementation()} keeps no CPython SSLContext")
    try:
        lib = _libssl()
        probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if _pointer(lib, probe) is None:
            return Support(False, "the SSLContext's SSL_CTX is not where CPython keeps it")
    except (OSError, AttributeError) as exc:
        return Support(False, f"libssl's SSL_CTX_ctrl cannot be called ({exc})")
    return Support(True)


class TicketKeys:
    """The ticket keys of one listener's context: fresh at start, then every `every` s."""

    def __init__(self, ctx: ssl.SSLContext, *, every: float = ROTATE_SECONDS) -> None:
        self.every = every
        self.rotations = 0
        self.rotated_at = 0.0
        self._ctx = ctx
        found = support()
        self.reason = found.reason
        self._lib = _libssl() if found.ok else None
        if self._lib is not None:
            address = _pointer(self._lib, ctx)
            if address is not None:
                self._lib.SSL_CTX_set_timeout(address, max(1, int(every)))
            self.rotate()

    @property
    def active(self) -> bool:
        return self._lib is not None

    def current(self) -> bytes:
        """The key set in service (b"" when rotation is off)."""
        address = self._address()
        if address is None:
            return b""
        buf = ctypes.create_string_buffer(KEY_BYTES)
        assert self._lib is not None
        if self._lib.SSL_CTX_ctrl(address, _GET_KEYS, KEY_BYTES, buf) != 1:
            return b""
        return buf.raw

    def rotate(self) -> bool:
        """New keys for new tickets; tickets under the old ones stop resuming."""
        address = self._address()
        if address is None:
            return False
        keys = ctypes.create_string_buffer(os.urandom(KEY_BYTES), KEY_BYTES)
        assert self._lib is not None
        if self._lib.SSL_CTX_ctrl(address, _SET_KEYS, KEY_BYTES, keys) != 1:
            self.reason = "SSL_CTX_set_tlsext_ticket_keys failed"
            self._lib = None
            return False
        self.rotations += 1
        self.rotated_at = time.monotonic()
        if self.rotations > 1:
            event(log, "tls_ticket_keys_rotated", every_s=self.every)
        return True

    def rotate_if_due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.active and now - self.rotated_at >= self.every and self.rotate()

    def _address(self) -> int | None:
        return _pointer(self._lib, self._ctx) if self._lib is not None else None
