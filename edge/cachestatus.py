"""The Cache-Status response field (RFC 9211), pure: what this cache did with a request.

One entry, ours (``vcdn-edge``), appended after those of caches nearer the origin, so a
parent tier's answer read through another vcdn edge says what each of them did::

    Cache-Status: vcdn-edge; hit
    Cache-Status: vcdn-edge; fwd=uri-miss; stored
    Cache-Status: vcdn-edge; fwd=stale; fwd-status=304

No ``ttl``: hits are answered by precomputed heads, and a value that differs per response
would cost the hit path a format per request.
"""

from __future__ import annotations

from typing import Final

NAME: Final = "vcdn-edge"
HIT: Final = f"{NAME}; hit"


def value(
    result: str,
    *,
    had_stale: bool = False,
    stored: bool = False,
    fwd_status: int | None = None,
    detail: str | None = None,
) -> str:
    """Our entry for an answer whose outcome (`EdgeStats` result names) is `result`:
    hit, stale (served stale on an upstream error), negative, revalidated, miss, pass,
    bypass (the request may not use the cache), method (unsafe, forwarded), range."""
    parts = [NAME]
    if result in ("hit", "stale", "negative"):
        parts.append("hit")
    if result == "revalidated":
        parts += ["fwd=stale", "fwd-status=304"]
    elif result == "stale":
        parts.append("fwd=stale")
    elif result in ("miss", "pass", "range"):
        parts.append("fwd=stale" if had_stale else "fwd=uri-miss")
    elif result in ("bypass", "method"):
        parts.append(f"fwd={result}")
    if fwd_status is not None and result != "revalidated":
        parts.append(f"fwd-status={fwd_status}")
    if stored:
        parts.append("stored")
    if detail is None and result in ("stale", "negative", "range"):
        detail = {"stale": "stale-if-error", "negative": "negative", "range": "range"}[result]
    if detail:
        parts.append(f"detail={detail}")
    return "; ".join(parts)


def append(prior: str | None, ours: str) -> str:
    """RFC 9211 §2: entries are in the order of the caches the answer passed through,
    origin side first."""
    return f"{prior}, {ours}" if prior else ours
