"""The one response-head serialiser of every hit, at the origin and the edge; pure.

A hit's head is `head_prefix` (status line, the planner's fields, the stored answer's
fixed fields, Cache-Control where it belongs) followed by `head_tail` (the fields that
change per answer: Age, Date, Connection: close, and the blank line). Owners keep
prefixes of plain 200 answers and only add a tail per response; everything else is
serialised here, per answer, from the same parts, so a fast hit, a large hit, a 304, a
416 and a HEAD of one object carry the same fields in the same order. An answer that is
no stored representation (an upstream's, relayed) gets the same layout from
`relay_head`.

``Date`` is formatted once a second (RFC 9110 §6.6.1 wants the time the answer was made,
to a second), as uvicorn does, by the one `CLOCK`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Final

from vcdn.httpserve.cors import RESPONSE_HEADERS
from vcdn.httpserve.plan import Plan

#: Our Server field on every answer, fast or not; no version to fingerprint.
SERVER: Final = "vcdn"
REASONS: Final = {
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    412: "Precondition Failed",
    416: "Range Not Satisfiable",
}
#: Statuses whose answer carries the stored Cache-Control (RFC 9111 §4.3.4 for 304).
CACHE_CONTROL_ON: Final = frozenset({200, 206, 304})
#: The fields every answer from a stored object carries besides the planner's.
COMMON_FIELDS: Final = (*RESPONSE_HEADERS, ("Server", SERVER))


class Clock:
    """The Date value, rebuilt once a second rather than per response, and the head tails
    made with it (`head_tail`), kept for that second by age and keep-alive."""

    __slots__ = ("_second", "_tails", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""
        self._tails: dict[int, bytes] = {}

    def date(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._text = formatdate(second, usegmt=True)
            self._tails = {}
        return self._text

    def tail(self, now: float, age: float | None, keep_alive: bool) -> bytes:
        date = self.date(now)
        whole = -1 if age is None else int(age) if age > 0 else 0
        key = whole * 2 + keep_alive
        tail = self._tails.get(key)
        if tail is None:
            text = f"Date: {date}\r\n"
            if whole >= 0:
                text = f"Age: {whole}\r\n" + text
            if not keep_alive:
                text += "Connection: close\r\n"
            tail = (text + "\r\n").encode("latin-1")
            if len(self._tails) < TAILS_MAX:
                self._tails[key] = tail
        return tail


#: Distinct (age, keep-alive) tails kept per second.
TAILS_MAX: Final = 4096
CLOCK: Final = Clock()


def fields_text(pairs: Iterable[tuple[str, str]]) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in pairs)


@dataclass(frozen=True, slots=True)
class StoredHead:
    """What a stored representation contributes to each of its answers' heads.

    `fixed` is serialised once (CORS, Server, the stored end-to-end fields, Via, ...),
    `cache_control` is the value sent on 200/206/304 (None: no field).
    """

    fixed: bytes
    cache_control: str | None

    @classmethod
    def of(cls, extra: Iterable[tuple[str, str]], cache_control: str | None) -> StoredHead:
        return cls(fields_text((*COMMON_FIELDS, *extra)).encode("latin-1"), cache_control)


def status_line(status: int) -> str:
    reason = REASONS.get(status)
    if reason is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    return f"HTTP/1.1 {status} {reason}\r\n"


def stored_lines(status: int, stored: StoredHead) -> bytes:
    """What follows the planner's fields in a `status` answer's head: the stored fixed
    fields, and Cache-Control where it belongs."""
    cc = stored.cache_control
    if cc and status in CACHE_CONTROL_ON:
        return stored.fixed + f"Cache-Control: {cc}\r\n".encode("latin-1")
    return stored.fixed


def head_prefix(plan: Plan, stored: StoredHead) -> bytes:
    """Every line of the head but the per-answer ones (`head_tail`)."""
    lines = status_line(plan.status) + fields_text(plan.headers)
    return lines.encode("latin-1") + stored_lines(plan.status, stored)


def head_tail(now: float, *, age: float | None = None, keep_alive: bool = True) -> bytes:
    """Age (when the answer comes from a cache), Date, Connection: close, blank line."""
    return CLOCK.tail(now, age, keep_alive)


#: Where a hit's head has them: the planner's fields first (`vcdn.httpserve.plan`), then
#: CORS and Server (`COMMON_FIELDS`), the stored fields, and last these, then the tail.
PLANNER_ORDER: Final = (
    "accept-ranges", "etag", "last-modified", "content-type", "content-range",
    "content-length", "transfer-encoding",
)
CORS_ORDER: Final = tuple(name.lower() for name, _ in RESPONSE_HEADERS)
LAST_ORDER: Final = ("via", "cache-status", "cache-control", "age")
_PLACED: Final = frozenset({*PLANNER_ORDER, *CORS_ORDER, *LAST_ORDER, "server", "date"})


def relay_head(
    status: int, fields: Iterable[tuple[str, str]], now: float, *, keep_alive: bool = True
) -> bytes:
    """The head of an answer that is no stored representation (an upstream's passed
    through), laid out as a hit's is: `fields` (framing, Via and Cache-Status included)
    go where a hit has them, the others in their own order after Server; Server and Date
    are ours. Values are sent as they were received (undecodable bytes escaped by the
    client's parser go back as they came); a CR or LF in one raises ValueError."""
    pairs = list(fields)
    for name, value in pairs:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"A line break in the field {name!r} cannot be relayed.")
    by_name: dict[str, list[tuple[str, str]]] = {}
    rest = []
    for pair in pairs:
        lower = pair[0].lower()
        if lower in _PLACED:
            by_name.setdefault(lower, []).append(pair)
        else:
            rest.append(pair)

    def placed(names: Iterable[str]) -> list[tuple[str, str]]:
        return [pair for name in names for pair in by_name.get(name, ())]

    text = status_line(status) + fields_text(
        (*placed(PLANNER_ORDER), *placed(CORS_ORDER), ("Server", SERVER), *rest,
         *placed(LAST_ORDER))
    )
    return text.encode("utf-8", "surrogateescape") + head_tail(now, keep_alive=keep_alive)
