"""The one hit planner of the origin and the edge, pure but for reading small spans.

An owner (the origin's hot files, the edge's store) decides whether a request is its to
answer from a stored representation (routing, token, freshness: "not mine" is None) and
keeps, per representation, a `Prepared`: the fixed head fields (`StoredHead`) and the
prebuilt head of the plain 200. Then, for every hit of either:

* `plan_hit(method, headers, stored, prepared, now, age=, keep_alive=)` → the exact head
  bytes and the body `Plan` (RFC 9110 §13.2.2 preconditions and Range by
  `vcdn.httpserve.plan`, the head by the one serialiser `vcdn.httpserve.wire`);
* `deliver(head, plan, data, open_file)` → what the hit connection protocol
  (`vcdn.httpserve.hitproto`) sends: the whole answer's bytes (a body from RAM, or a
  small span or multipart body read at once), or a `Large` (a body sent from its file
  with sendfile, or pread and write where the transport has no socket).

So a fast hit, a large hit, a 304, a 416 and a HEAD carry the same fields in the same
order, at the origin and at the edge.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from vcdn.errors import BadRange, VcdnError
from vcdn.httpserve.body import read_spans
from vcdn.httpserve.fasthead import Head
from vcdn.httpserve.multipart import MultipartTemplate
from vcdn.httpserve.plan import (
    Plan,
    Stored,
    multipart_plan,
    plan_response,
    plan_stored,
    validator_fields,
)
from vcdn.httpserve.wire import (
    StoredHead,
    fields_text,
    head_prefix,
    head_tail,
    status_line,
    stored_lines,
)
from vcdn.ranges import parse_range

#: Spans read from disk below this size go out in one write with their head (a pread and
#: a copy cost less than a sendfile round); from this size on, with sendfile.
DIRECT_MIN: Final = 16 * 1024
#: Multi-range bodies up to this size are read whole and go out in one write with their
#: head: sent from the file they would cost a task, a write per part header and a
#: sendfile per part, several times the copy of a few parts held briefly in memory.
MULTIPART_READ_MAX: Final = 256 * 1024
#: A request carrying any of these needs the planner (RFC 9110 §13, §14), not the plain 200.
NEEDS_PLANNER: Final = (
    "Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range"
)

#: Opens the representation's file for reading; raises OSError or `VcdnError` if gone.
OpenFile = Callable[[], int]


@dataclass(frozen=True, slots=True)
class Large:
    """A hit whose body is sent from its file: the exact head, the plan and the opener."""

    head: bytes
    plan: Plan
    open_file: OpenFile


#: An owner's answer to one request head: the whole answer, a `Large`, or None (not mine).
Answer = Callable[[Head], bytes | Large | None]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A stored representation readied for hits, built once per version: its fixed head
    fields, the head prefix of its plain 200, the plans of a plain GET and HEAD, and what
    its multi-range answers share (validators, the multipart framing, the head around
    the Content-Length), so that a hit with only a Range formats its numbers alone."""

    stored: StoredHead
    plain: bytes
    get: Plan
    head: Plan
    validators: tuple[tuple[str, str], ...]
    multipart: MultipartTemplate
    #: A multi-range answer's head up to its Content-Length value, and after it.
    multipart_head: tuple[bytes, bytes]

    @classmethod
    def of(cls, obj: Stored, stored: StoredHead) -> Prepared:
        return cls.fields(stored, size=obj.size, etag=obj.etag,
                          last_modified=obj.last_modified, content_type=obj.content_type)

    @classmethod
    def fields(
        cls, stored: StoredHead, *, size: int, etag: str | None, last_modified: float | None,
        content_type: str,
    ) -> Prepared:
        """`of` for a representation known by its fields."""

        def plan(method: str) -> Plan:
            return plan_response(method, {}, size=size, etag=etag,
                                 last_modified=last_modified, content_type=content_type)

        get = plan("GET")
        validators = validator_fields(etag, last_modified)
        template = MultipartTemplate.of(size, content_type)
        # The same lines, in the same order, as `head_prefix` of a `multipart_plan`.
        start = status_line(206) + fields_text(
            (*validators, ("Content-Type", template.content_type))
        ) + "Content-Length: "
        return cls(stored, head_prefix(get, stored), get, plan("HEAD"), validators, template,
                   (start.encode("latin-1"), b"\r\n" + stored_lines(206, stored)))


def plain(headers: Mapping[str, str]) -> bool:
    """No field of `NEEDS_PLANNER` (unrolled: one lookup each, no generator)."""
    get = headers.get
    return (
        get("Range") is None
        and get("If-None-Match") is None
        and get("If-Modified-Since") is None
        and get("If-Match") is None
        and get("If-Unmodified-Since") is None
        and get("If-Range") is None
    )


def multi_range_only(headers: Mapping[str, str]) -> bool:
    """A Range of several specs and no precondition (RFC 9110 §13.2.2 has nothing to
    evaluate but the Range): the answer is a multipart one the `Prepared` lays out, or,
    when the specs merge into one or select nothing, the planner's."""
    get = headers.get
    range_ = get("Range")
    return (
        range_ is not None
        and "," in range_
        and get("If-Range") is None
        and get("If-None-Match") is None
        and get("If-Modified-Since") is None
        and get("If-Match") is None
        and get("If-Unmodified-Since") is None
    )


def plan_hit(
    method: str,
    headers: Mapping[str, str],
    obj: Stored,
    prepared: Prepared,
    now: float,
    *,
    age: float | None = None,
    keep_alive: bool = True,
) -> tuple[bytes, Plan]:
    """The exact head and the body plan of a GET or HEAD answered from `obj`. `age` is
    sent as Age (a cache's answer, RFC 9111 §5.1); None sends none (the origin's)."""
    tail = head_tail(now, age=age, keep_alive=keep_alive)
    if plain(headers):
        return prepared.plain + tail, prepared.get if method == "GET" else prepared.head
    if multi_range_only(headers) and (method == "GET" or method == "HEAD"):
        multipart = prepared.multipart
        try:
            ranges = parse_range(headers.get("Range"), multipart.size)
        except BadRange:
            ranges = None  # 416: the planner answers
        if ranges is not None and len(ranges) > 1:
            layout = multipart.layout(ranges)
            start, end = prepared.multipart_head
            head = b"%s%d%s%s" % (start, layout.content_length, end, tail)
            return head, multipart_plan(prepared.validators, layout, head=method == "HEAD")
    plan = plan_stored(method, headers, obj, boundary=prepared.multipart.boundary)
    return head_prefix(plan, prepared.stored) + tail, plan


def body_of(plan: Plan, data: bytes) -> bytes:
    """The planned body cut from the whole representation held in RAM."""
    if plan.multipart is not None:
        return plan.multipart.assemble(data)
    r = plan.spans[0]
    return data if r.length == len(data) else data[r.first : r.last + 1]


def deliver(
    head: bytes, plan: Plan, data: bytes | None, open_file: OpenFile
) -> bytes | Large | None:
    """What to send for a planned hit: `data` is the whole representation from RAM (None:
    only on disk). None when the file went or is shorter than planned (not mine after
    all: the application answers, with a 404 or a fresh fill)."""
    if not plan.has_body:
        return head
    if data is not None:
        return head + body_of(plan, data)
    if plan.content_length >= (DIRECT_MIN if plan.multipart is None else MULTIPART_READ_MAX):
        return Large(head, plan, open_file)
    try:
        fd = open_file()
    except (OSError, VcdnError):
        return None
    try:
        return read_spans(fd, plan, head)
    except VcdnError:
        return None
    finally:
        os.close(fd)


def file_opener(path: str) -> OpenFile:
    """An `OpenFile` for a path the owner already resolved safely."""

    def open_file() -> int:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    return open_file
