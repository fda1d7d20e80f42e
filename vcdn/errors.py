"""The one exception tree of vcdn.

Every error says whose fault it is and which HTTP status fits it, so that adapters
translate errors once, at their boundary, and never guess::

    VcdnError
    ├── ClientError (400)            the request or input is wrong
    │   ├── BadRange (416)            Range header selects nothing in the representation
    │   ├── BadToken (403)            signed URL token is malformed, expired or for another title
    │   ├── NotFound (404)
    │   ├── PayloadTooLarge (413)
    │   └── Unauthorized (401) / Forbidden (403)
    ├── ConfigError                   a setting is missing or malformed (names the key)
    ├── MediaError                    a source video cannot be packaged (says why)
    ├── UpstreamError (502)           a peer, parent or origin failed us
    │   ├── UpstreamTimeout (504)
    │   ├── UpstreamStatus (502)      it answered with an unexpected status
    │   └── CircuitOpen (503)         we stopped asking it for a while
    ├── StoreError (500)              our own storage failed (disk, database)
    │   └── DiskFull (507)
    └── IntegrityError (502)          bytes did not match their declared size or sha256

An exception's message is a sentence a user can act on.
"""

from __future__ import annotations


class VcdnError(Exception):
    """Something went wrong in vcdn."""

    status_hint: int = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.__class__.__name__).strip())

    @property
    def message(self) -> str:
        return str(self)


class ClientError(VcdnError):
    """The request is malformed."""

    status_hint = 400


class BadRange(ClientError):
    """The Range header selects no byte of the representation."""

    status_hint = 416

    def __init__(self, message: str | None = None, *, size: int = 0) -> None:
        super().__init__(message)
        self.size = size


class BadToken(ClientError):
    """The signed URL token is not valid for this request."""

    status_hint = 403


class NotFound(ClientError):
    """The requested resource does not exist."""

    status_hint = 404


class PayloadTooLarge(ClientError):
    """The request body is larger than allowed."""

    status_hint = 413


class Unauthorized(ClientError):
    """A valid bearer token is required."""

    status_hint = 401


class Forbidden(ClientError):
    """The bearer token's role may not do this."""

    status_hint = 403


class Conflict(ClientError):
    """The request conflicts with what exists."""

    status_hint = 409


class ConfigError(VcdnError):
    """A setting is missing or malformed."""

    status_hint = 500


class MediaError(VcdnError):
    """The source media cannot be packaged."""

    status_hint = 422


class UpstreamError(VcdnError):
    """An upstream (peer, parent or origin) failed."""

    status_hint = 502


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time."""

    status_hint = 504


class UpstreamStatus(UpstreamError):
    """The upstream answered with an unexpected status."""

    status_hint = 502

    def __init__(self, message: str | None = None, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class CircuitOpen(UpstreamError):
    """The upstream failed repeatedly; it is not asked again for a while."""

    status_hint = 503


class StoreError(VcdnError):
    """Our own storage failed."""

    status_hint = 500


class DiskFull(StoreError):
    """The cache disk has no room left."""

    status_hint = 507


class IntegrityError(VcdnError):
    """Bytes did not match their declared size or sha256."""

    status_hint = 502
