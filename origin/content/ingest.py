"""``PUT /v/{title}/{path}``: live pipelines publishing to the origin.

Who may PUT: a bearer token whose sha256 is in the origin's ``ingest_token_sha256``
setting (the packager's token; the origin stores only its hash). The origin checks it
locally rather than asking the control API, so a live event keeps flowing through a
control-plane outage, and a token check costs a hash, not a round trip per segment.

What may be PUT: ``live.json`` (the event), ``master.m3u8``, ``{rendition}/init.mp4`` and
``{rendition}/seg_{msn}.m4s``; the origin writes the media playlists itself. The body must
announce its length (411 otherwise, 413 above ``max_ingest_bytes``) and is read into a
temporary file under ``{root}/.vcdn-ingest`` (a dot name, which is never served): an
upload cut short (client gone, fewer bytes than announced) is deleted and nothing of it
is ever visible. Only a whole body goes on to `origin.content.live` to be judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import aiohttp
from aiohttp import web

from origin.content.live import EVENT_NAME, RENDITION_RE, SEGMENT_RE, LiveTitles
from origin.content.llserve import PART_RE, LowLatency
from vcdn.errors import ClientError, Forbidden, PayloadTooLarge, Unauthorized
from vcdn.titles import is_valid_title

INGEST_TMP: Final = ".vcdn-ingest"
CHUNK: Final = 256 * 1024


class LengthRequired(ClientError):
    """PUT needs a Content-Length."""

    status_hint = 411


def check_token(header: str | None, accepted: Iterable[str]) -> None:
    """401 without credentials, 403 with a token that is not an ingest token."""
    if not header:
        raise Unauthorized("PUT needs the packager's bearer token (Authorization: Bearer ...).")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer TOKEN'.")
    digest = hashlib.sha256(token.strip().encode()).hexdigest()
    if not any(hmac.compare_digest(digest, known.lower()) for known in accepted):
        raise Forbidden("This token may not publish to the origin.")


def classify(inner: str) -> tuple[str, str, int]:
    """(kind, rendition, msn) of a PUT path inside a title; Forbidden for anything else."""
    if inner in (EVENT_NAME, "master.m3u8"):
        return ("event" if inner == EVENT_NAME else "static"), "", -1
    rendition, slash, name = inner.partition("/")
    if slash and RENDITION_RE.match(rendition):
        if name == "init.mp4":
            return "static", rendition, -1
        m = SEGMENT_RE.match(name)
        if m is not None:
            return "segment", rendition, int(m.group(1))
        part = PART_RE.match(name)
        if part is not None:
            return "part", rendition, int(part.group(1))
    raise Forbidden(
        f"Only live.json, master.m3u8, {{rendition}}/init.mp4, {{rendition}}/seg_N.m4s and "
        f"{{rendition}}/part_N_I.m4s may be PUT, not {inner!r}; the origin writes media "
        "playlists itself."
    )


async def receive(request: web.Request, spool: Path, limit: int) -> Path:
    """The body in a temporary file, whole, or an error and no file."""
    length = request.content_length
    if length is None:
        raise LengthRequired("PUT needs a Content-Length (chunked uploads are not accepted).")
    if length > limit:
        raise PayloadTooLarge(f"The upload is {length} bytes; the limit is {limit}.")
    fd, name = tempfile.mkstemp(dir=spool, prefix=".put.")
    got = 0
    try:
        with os.fdopen(fd, "wb") as fh:
            while chunk := await request.content.read(CHUNK):
                got += len(chunk)
                if got > length:
                    break
                fh.write(chunk)
    except (OSError, aiohttp.ClientError, asyncio.IncompleteReadError):
        got = -1
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    if got != length:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise ClientError(
            f"The upload broke off after {max(got, 0)} of {length} bytes; nothing was kept."
        )
    return Path(name)


def ingest_spool(root: Path) -> Path:
    spool = root / INGEST_TMP
    spool.mkdir(exist_ok=True)
    return spool


async def handle_put(
    request: web.Request, title: str, inner: str, live: LiveTitles, accepted: tuple[str, ...],
    limit: int, ll: LowLatency | None = None,
) -> web.Response:
    check_token(request.headers.get("Authorization"), accepted)
    if not is_valid_title(title):
        raise ClientError(f"{title!r} is not a valid title id.")
    kind, rendition, msn = classify(inner)
    if kind == "part" and ll is not None:
        # Streamed (chunked) and readable while it arrives: `origin.content.llserve`.
        index = int(inner.rpartition("_")[2].partition(".")[0])
        return await ll.receive_part(request, title, rendition, msn, index)
    tmp = await receive(request, ingest_spool(live.root), limit)
    try:
        if kind == "event":
            status = live.put_event(title, tmp)
        elif kind == "static":
            status = live.put_static(title, inner, tmp)
        else:
            status = live.put_segment(title, rendition, inner.rpartition("/")[2], msn, tmp)
    finally:
        tmp.unlink(missing_ok=True)
    return web.Response(status=status, text="kept\n" if status == 201 else "already kept\n")
