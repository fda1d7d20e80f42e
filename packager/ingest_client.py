"""PUT to the origin's live ingest: ``PUT {origin}/v/{title}/{path}`` with a bearer token.

Blocking `http.client` on one kept-alive connection: the uploader sends one file at a
time in order (init before segments, segments in sequence), and a reconnect per file
would add a round trip to every segment's latency. A failed PUT is retried a few times
with a short backoff; the origin writes each upload atomically and keeps the first good
copy, so a retry after a lost answer is harmless.
"""

from __future__ import annotations

import http.client
import ssl
import time
from typing import Final
from urllib.parse import quote, urlsplit

from vcdn import tls, tls_io
from vcdn.errors import ClientError, UpstreamError

TIMEOUT_S: Final = 10.0
ATTEMPTS: Final = 3
BACKOFF_S: Final = 0.2


class IngestClient:
    """One origin, one title."""

    def __init__(self, origin: str, title: str, token: str, *, timeout: float = TIMEOUT_S) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{origin!r} is not an http:// or https:// URL")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base = parts.path.rstrip("/") + "/v/" + quote(title) + "/"
        self.token = token
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    @property
    def _url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.scheme == "https":
                # Verified like every other client: the system store, or the CA bundle
                # of VCDN_CA_BUNDLE; no switch turns it off.
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout,
                    context=tls_io.client_context(),
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def put(self, path: str, body: bytes, content_type: str) -> int:
        """PUT one file; returns the status (201 kept, 200 a copy was already kept).
        ClientError for a refusal the origin explains (4xx), UpstreamError when it
        cannot be reached or fails after the retries."""
        last = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(BACKOFF_S * attempt)
            try:
                conn = self._connection()
                conn.request("PUT", self.base + quote(path), body=body, headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": content_type,
                    "Content-Length": str(len(body)),
                })
                resp = conn.getresponse()
                text = resp.read(2048).decode(errors="replace")
                if resp.will_close:
                    self.close()
            except ssl.SSLError as exc:
                # A certificate that does not verify will not verify on a retry either.
                self.close()
                raise UpstreamError(tls.describe_failure(exc, "origin", self._url)) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                last = f"{type(exc).__name__}: {exc}"
                continue
            if resp.status in (200, 201, 204):
                return resp.status
            if 400 <= resp.status < 500:
                raise ClientError(f"the origin refused {path} ({resp.status}): {text.strip()}")
            last = f"status {resp.status}"
        raise UpstreamError(f"PUT {path} to {self.host}:{self.port} failed: {last}")

    def get(self, path: str) -> bytes:
        """GET a file of the title (the manifest after the event ends)."""
        conn = self._connection()
        try:
            conn.request("GET", self.base + quote(path))
            resp = conn.getresponse()
            body = resp.read()
        except ssl.SSLError as exc:
            self.close()
            raise UpstreamError(tls.describe_failure(exc, "origin", self._url)) from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise UpstreamError(f"GET {path} from the origin failed: {exc}") from None
        if resp.status != 200:
            raise UpstreamError(f"GET {path} from the origin answered {resp.status}")
        return body
