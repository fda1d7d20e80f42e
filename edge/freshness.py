"""RFC 9111 caching rules, pure: what may be stored, for how long, and how old it is.

The edge is a *shared* cache (§1), so ``private`` responses and requests carrying
``Authorization`` are not stored unless the origin says otherwise (§3.5). Everything here
takes header values and clock readings and returns decisions; no I/O, no aiohttp.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from edge.targeted import targeted_cache_control
from vcdn.httpserve.validators import parse_http_date

#: §4.2.2: a heuristic lifetime is a fraction of the time since Last-Modified; 10% is the
#: figure the RFC cites, capped at a day so that a forgotten object still gets rechecked.
HEURISTIC_FRACTION: Final = 0.1
HEURISTIC_CAP: Final = 86400.0
#: Statuses we store on disk. RFC 9111 allows more (§3): other final answers are kept
#: briefly in memory instead (`negative_lifetime`, edge.negative), never partial ones.
STORABLE_STATUSES: Final = frozenset({200})
#: RFC 9110 §15.1: statuses a cache may give a heuristic lifetime (§4.2.2) when the
#: answer has no explicit one.
HEURISTICALLY_CACHEABLE: Final = frozenset(
    {200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501}
)
#: Answers never kept in memory: 200 goes to disk, 206 is a part of something, 304 has
#: no representation of its own.
NOT_KEPT: Final = frozenset({200, 206, 304})
#: §7.6.1 of RFC 9110: hop-by-hop fields never travel past one connection.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: Fields we compute for every response ourselves rather than replay from storage.
COMPUTED: Final = frozenset(
    {
        "age",
        "date",
        "via",
        "content-length",
        "content-range",
        "accept-ranges",
        "etag",
        "last-modified",
        "content-type",
        "cache-control",
        "server",
        "access-control-allow-origin",
        "access-control-expose-headers",
        # What the caches before us did with the request that filled us (RFC 9211);
        # a hit says what we did, and only that.
        "cache-status",
    }
)
#: §3.2: when a 304 updates a stored response, these describe the stored body and stay.
_KEEP_ON_304: Final = frozenset(
    {"content-length", "content-range", "content-encoding", "content-md5", "etag"}
)
IMMUTABLE_LIFETIME: Final = 10 * 365 * 86400.0
#: Status codes this cache understands (RFC 9110 §15), for ``must-understand`` (§5.2.2.3).
UNDERSTOOD: Final = frozenset(
    {100, 101, 200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 305, 307, 308}
    | set(range(400, 418)) | {421, 422, 426} | set(range(500, 506))
)


def parse_cache_control(value: str | None) -> dict[str, str | None]:
    """``"max-age=60, no-cache"`` → ``{"max-age": "60", "no-cache": None}`` (§5.2).

    Directive names are case-insensitive; a quoted argument loses its quotes. Commas inside
    a quoted string (``no-cache="a, b"``) are kept together.
    """
    out: dict[str, str | None] = {}
    if not value:
        return out
    for item in _split_commas(value):
        name, eq, arg = item.partition("=")
        name = name.strip().lower()
        if not name:
            continue
        if eq:
            arg = arg.strip()
            if len(arg) >= 2 and arg[0] == arg[-1] == '"':
                arg = arg[1:-1]
            out.setdefault(name, arg)
        else:
            out.setdefault(name, None)
    return out


def _split_commas(value: str) -> Iterable[str]:
    item: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            yield "".join(item)
            item = []
        else:
            item.append(ch)
    yield "".join(item)


def _seconds(arg: str | None) -> int | None:
    """A delta-seconds argument (§1.2.2); None when absent or malformed."""
    if arg is None or not arg.isascii() or not arg.isdigit():
        return None
    return min(int(arg), 2**31)  # §1.2.2: saturate overly large values


@dataclass(frozen=True, slots=True)
class Policy:
    """What a stored response's Cache-Control (and Expires) means for a shared cache."""

    lifetime: float
    no_cache: bool = False
    must_revalidate: bool = False
    stale_if_error: float = 0.0
    immutable: bool = False


def response_directives(headers: Mapping[str, str]) -> tuple[dict[str, str | None], bool]:
    """The response's caching directives for this cache, and whether they came from a
    field targeted at us (`edge.targeted`: then Cache-Control and Expires are ignored)."""
    targeted = targeted_cache_control(headers)
    if targeted is not None:
        return parse_cache_control(targeted), True
    return parse_cache_control(_get(headers, "Cache-Control")), False


def policy(headers: Mapping[str, str], now: float) -> Policy:
    """The freshness lifetime (§4.2.1) and revalidation flags of a response's headers."""
    cc, targeted = response_directives(headers)
    lifetime: float
    s_maxage = _seconds(cc.get("s-maxage"))
    max_age = _seconds(cc.get("max-age"))
    if s_maxage is not None:
        lifetime = float(s_maxage)
    elif max_age is not None:
        lifetime = float(max_age)
    elif targeted:
        lifetime = 0.0
    elif (expires := _get(headers, "Expires")) is not None:
        exp = parse_http_date(expires)
        date = _date(headers, now)
        # §5.3: an invalid Expires (e.g. "0") means already expired.
        lifetime = max(0.0, exp - date) if exp is not None else 0.0
    elif (lm_text := _get(headers, "Last-Modified")) is not None and (
        (lm := parse_http_date(lm_text)) is not None
    ):
        lifetime = min(HEURISTIC_CAP, max(0.0, (_date(headers, now) - lm) * HEURISTIC_FRACTION))
    else:
        lifetime = 0.0
    immutable = "immutable" in cc
    if immutable and lifetime <= 0:
        lifetime = IMMUTABLE_LIFETIME
    return Policy(
        lifetime=lifetime,
        no_cache="no-cache" in cc,
        # §5.2.2.10: s-maxage also forbids serving stale in a shared cache.
        must_revalidate="must-revalidate" in cc or "proxy-revalidate" in cc or s_maxage is not None,
        stale_if_error=float(_seconds(cc.get("stale-if-error")) or 0),
        immutable=immutable,
    )


def explicit(headers: Mapping[str, str]) -> bool:
    """Does the response say how long it may be used (§4.2.1), or that it may not be
    used unasked? (Else only a heuristic, or nothing, decides.)"""
    cc, targeted = response_directives(headers)
    return (
        targeted
        or "max-age" in cc
        or "s-maxage" in cc
        or "no-cache" in cc
        or _get(headers, "Expires") is not None
    )


def storable(
    method: str,
    status: int,
    request_headers: Mapping[str, str],
    response_headers: Mapping[str, str],
) -> tuple[bool, str]:
    """May a shared cache store this response (§3)? Returns (yes, reason when not)."""
    if method not in ("GET", "HEAD"):
        return False, "method"
    cc, _ = response_directives(response_headers)
    if "must-understand" in cc and status not in UNDERSTOOD:
        return False, f"must-understand, status {status}"  # §5.2.2.3
    if status not in STORABLE_STATUSES:
        return False, f"status {status}"
    req_cc = parse_cache_control(_get(request_headers, "Cache-Control"))
    if "no-store" in req_cc:
        return False, "request no-store"
    if "no-store" in cc and "must-understand" not in cc:
        return False, "no-store"
    if "private" in cc:
        return False, "private"
    if _get(response_headers, "Set-Cookie") is not None:
        # A shared cache would hand one user's session to every later client. RFC 9111
        # §7.3 leaves it to us; the qualified no-cache="Set-Cookie" form that would let us
        # store the rest is rare upstream and easy to get wrong, so we never store these.
        return False, "set-cookie"
    if _get(request_headers, "Authorization") is not None and not (
        "public" in cc or "s-maxage" in cc or "must-revalidate" in cc
    ):
        return False, "authorization"  # §3.5
    vary = _get(response_headers, "Vary")
    if vary is not None and "*" in {v.strip() for v in vary.split(",")}:
        return False, "vary *"  # §4.1: matches no later request
    if _get(response_headers, "Content-Range") is not None:
        return False, "partial"
    return True, ""


def negative_lifetime(
    status: int,
    request_headers: Mapping[str, str],
    headers: Mapping[str, str],
    now: float,
    cap: float,
) -> float:
    """How long a final answer other than 200 may be kept in memory (0: not at all), at
    most `cap` seconds: errors, and the other 2xx and 3xx answers (203, 204, redirects).

    §3 allows explicit freshness or, for heuristically cacheable statuses (404, 410, 301,
    …), a heuristic; for errors we take only the explicit kind, since a heuristic 404
    would hide a live segment that appears a moment later. Never for no-store, private,
    no-cache, Set-Cookie or Authorization; Vary would need variants, so no.
    """
    if status < 200 or status in NOT_KEPT or cap <= 0:
        return 0.0
    cc, _ = response_directives(headers)
    if "must-understand" in cc and status not in UNDERSTOOD:
        return 0.0
    req_cc = parse_cache_control(_get(request_headers, "Cache-Control"))
    if (
        "no-store" in cc
        or "private" in cc
        or "no-cache" in cc
        or "no-store" in req_cc
        or _get(headers, "Set-Cookie") is not None
        or _get(headers, "Vary") is not None
        or _get(request_headers, "Authorization") is not None
    ):
        return 0.0
    explicit = "max-age" in cc or "s-maxage" in cc or _get(headers, "Expires") is not None
    heuristic = status < 400 and status in HEURISTICALLY_CACHEABLE
    return min(cap, policy(headers, now).lifetime) if explicit or heuristic else 0.0


def _get(headers: Mapping[str, str], name: str) -> str | None:
    """A field's value; repeated field lines are one comma-joined list (RFC 9110 §5.3)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        values = getall(name, [])
        return ", ".join(values) if values else None
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


def _date(headers: Mapping[str, str], now: float) -> float:
    text = _get(headers, "Date")
    parsed = parse_http_date(text) if text else None
    return float(parsed) if parsed is not None else now


def initial_age(headers: Mapping[str, str], request_time: float, response_time: float) -> float:
    """``corrected_initial_age`` of §4.2.3, fixed when the response arrives."""
    apparent_age = max(0.0, response_time - _date(headers, response_time))
    age_value = age_field(_get(headers, "Age"))
    response_delay = response_time - request_time
    corrected_age_value = age_value + response_delay
    return max(apparent_age, corrected_age_value)


def age_field(text: str | None) -> float:
    """The Age field's delta-seconds (§5.1); 0 when absent. A value that is not exactly
    one delta-seconds (``abc``, ``-1``, ``1.5``, ``7200;x=1``, two values or two lines) says
    nothing trustworthy about the response's age, so it is taken as older than any
    lifetime: the response is stored stale and revalidated before use."""
    if text is None:
        return 0.0
    value = text.strip()
    if not value.isascii() or not value.isdigit():
        return float(2**31)
    return float(min(int(value), 2**31))


def current_age(initial: float, response_time: float, now: float) -> float:
    """§4.2.3: ``current_age = corrected_initial_age + resident_time``."""
    return initial + max(0.0, now - response_time)


def age_header(age: float) -> str:
    """Age is delta-seconds (§5.1): a non-negative integer, rounded down."""
    return str(int(max(0.0, min(age, 2**31))))


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a stored response may be used for a request (§4)."""

    fresh: bool
    #: Stale but may stand in for an upstream error (RFC 5861 §4 ``stale-if-error``).
    usable_on_error: bool


def judge(
    pol: Policy,
    age: float,
    request_headers: Mapping[str, str],
) -> Verdict:
    """Is a stored response of `age` seconds fresh enough for this request (§4.2, §5.2.1)?"""
    req = parse_cache_control(_get(request_headers, "Cache-Control"))
    fresh = not pol.no_cache and age < pol.lifetime
    if fresh and (pragma := _get(request_headers, "Pragma")) and "no-cache" in pragma.lower():
        fresh = "cache-control" in {k.lower() for k in request_headers}  # §5.4
    if fresh and "no-cache" in req:
        fresh = False
    if fresh and (max_age := _seconds(req.get("max-age"))) is not None and age > max_age:
        fresh = False
    if fresh and (min_fresh := _seconds(req.get("min-fresh"))) is not None:
        fresh = pol.lifetime - age >= min_fresh
    staleness = age - pol.lifetime
    if not fresh and not pol.must_revalidate and not pol.no_cache and "max-stale" in req:
        max_stale = req["max-stale"]
        limit = _seconds(max_stale) if max_stale is not None else math.inf
        if limit is not None and staleness <= limit:
            fresh = True
    usable = not pol.must_revalidate and pol.stale_if_error > 0 and staleness <= pol.stale_if_error
    return Verdict(fresh=fresh, usable_on_error=usable)


def end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The fields worth storing and replaying: no hop-by-hop, none we compute (§3.1)."""
    pairs = list(headers)
    named = set()
    for name, value in pairs:
        if name.lower() == "connection":
            named |= {v.strip().lower() for v in value.split(",")}
    return [
        (n, v)
        for n, v in pairs
        if n.lower() not in HOP_BY_HOP and n.lower() not in COMPUTED and n.lower() not in named
    ]


def merge_304(
    stored: Iterable[tuple[str, str]], fresh: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Stored header fields updated from a 304's (§3.2, §4.3.4)."""
    new = [
        (n, v) for n, v in fresh if n.lower() not in _KEEP_ON_304 and n.lower() not in HOP_BY_HOP
    ]
    replaced = {n.lower() for n, _ in new}
    return [(n, v) for n, v in stored if n.lower() not in replaced] + new


def invalidates(method: str, status: int) -> bool:
    """§4.4: an unsafe request with a non-error answer invalidates the target URI."""
    return method not in ("GET", "HEAD", "OPTIONS", "TRACE") and 200 <= status < 400
