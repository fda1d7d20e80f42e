"""Byte checks during a load run: a throughput figure only counts if the bytes were right.

While wrk drives a server, a `Sampler` thread on the load core asks the same server for
random requests of the same case over its own keep-alive connection and compares every
body with the file on disk: sha256 of a whole body or of each range, and multipart bodies
split by the standard library's MIME parser (not vcdn's), each part's Content-Range and
bytes checked. One wrong byte makes the case incorrect, and the run records no ratio.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import http.client
import os
import random
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from bench.edge.content import TITLE, Case
from bench.edge.targets import LOAD_CPU

#: Pause between two checks: a sample, not a second load generator.
INTERVAL: Final = 0.02


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _spans(header: str, size: int) -> list[tuple[int, int]]:
    """(first, last) byte positions of the benchmark's own Range headers (`a-b` and `-n`,
    parts far apart), worked out here rather than by any code the servers run."""
    out = []
    for spec in header.removeprefix("bytes=").split(","):
        a, _, b = spec.strip().partition("-")
        out.append((size - int(b), size - 1) if a == "" else (int(a), min(int(b), size - 1)))
    return out


def check_body(status: int, headers: http.client.HTTPMessage, body: bytes, data: bytes,
               case: Case, range_header: str | None) -> str | None:
    """None if the answer carries exactly the bytes asked for, else what is wrong."""
    if status != case.status:
        return f"status {status}, want {case.status}"
    if range_header is None:
        return None if _sha(body) == _sha(data) else f"body sha256 differs ({len(body)} B)"
    spans = _spans(range_header, len(data))
    ctype = headers.get("Content-Type", "")
    if len(spans) == 1:
        first, last = spans[0]
        want = f"bytes {first}-{last}/{len(data)}"
        if headers.get("Content-Range") != want:
            return f"Content-Range {headers.get('Content-Range')!r}, want {want!r}"
        return None if _sha(body) == _sha(data[first:last + 1]) else "range sha256 differs"
    if not ctype.startswith("multipart/byteranges"):
        return f"{len(spans)} ranges answered as {ctype!r}"
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
    parts = list(msg.iter_parts()) if msg.is_multipart() else []
    if len(parts) != len(spans):
        return f"{len(parts)} multipart parts, want {len(spans)}"
    for part, (first, last) in zip(parts, spans, strict=True):
        want = f"bytes {first}-{last}/{len(data)}"
        if part["Content-Range"] != want:
            return f"part Content-Range {part['Content-Range']!r}, want {want!r}"
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or _sha(payload) != _sha(data[first:last + 1]):
            return f"part {want} sha256 differs"
    return None


@dataclass
class Sampler:
    """Checks random requests of `case` against `url_prefix` until stopped."""

    url_prefix: str
    case: Case
    root: Path
    seed: int = 1
    #: For an https:// prefix: the context that verifies the server (bench.tls).
    ssl_context: ssl.SSLContext | None = None
    checks: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self._files = {p: (self.root / TITLE / p).read_bytes() for p in self.case.paths}

    def once(self, conn: http.client.HTTPConnection, rng: random.Random) -> None:
        path = rng.choice(self.case.paths)
        rh = rng.choice(self.case.ranges) if self.case.ranges else None
        target = urlsplit(self.url_prefix).path + TITLE + "/" + path
        try:
            conn.request("GET", target, headers={"Range": rh} if rh else {})
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self.failures.append(f"GET {path} ({rh}): {exc!r}")
            return
        self.checks += 1
        problem = check_body(resp.status, resp.headers, body, self._files[path], self.case, rh)
        if problem:
            self.failures.append(f"GET {path} ({rh}): {problem}")

    def connect(self) -> http.client.HTTPConnection:
        u = urlsplit(self.url_prefix)
        if u.scheme == "https":
            return http.client.HTTPSConnection(u.hostname or "127.0.0.1", u.port, timeout=10,
                                               context=self.ssl_context)
        return http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=10)

    def _loop(self) -> None:
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # this thread only (Linux: tid 0 = caller)
        rng = random.Random(self.seed)
        conn = self.connect()
        try:
            while not self._stop.is_set() and len(self.failures) < 20:
                self.once(conn, rng)
                time.sleep(INTERVAL)
        finally:
            conn.close()

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    @property
    def correct(self) -> bool:
        return self.checks > 0 and not self.failures
