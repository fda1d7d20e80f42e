"""A heartbeat body to a checked `Heartbeat` and its history text, pure and bounded.

A beat may carry 10,000 title counts; parsing, checking and cutting that is ~10 ms of
Python, which must not stall the event loop every other request waits on. Small beats
(the common case) are parsed in place; large ones in a worker thread (`parse_off_loop`),
where the interpreter hands the loop back every switch interval (5 ms by default).
The title counts, the bulk of a big beat, are checked by one tight loop here rather than
the generic schema decoder.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from typing import Any, Final

from origin.control.beats import history_body
from origin.control.validate import ID_PATTERN, check_heartbeat, check_id
from vcdn.errors import ClientError
from vcdn.schemas import Heartbeat, decode

OFF_LOOP_BYTES: Final = 32 * 1024
_ID_MATCH: Final = re.compile(ID_PATTERN).match


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    max_titles: int
    max_count: int
    detail_chars: int


def title_counts(value: Any, limits: Limits) -> dict[str, int]:
    """`title_requests` checked: an object of at most `max_titles` title ids to counts."""
    if not isinstance(value, dict):
        raise ClientError("'title_requests' must be a JSON object")
    if len(value) > limits.max_titles:
        raise ClientError(
            f"'title_requests' lists {len(value)} titles; at most {limits.max_titles} per "
            "heartbeat (setting heartbeat_max_titles)"
        )
    top = limits.max_count
    for title, count in value.items():
        if type(count) is not int or not 0 <= count <= top:
            raise ClientError(
                f"'title_requests.{title[:64]}' must be an integer between 0 and {top} "
                "(setting heartbeat_max_count)"
            )
        if not _ID_MATCH(title):
            check_id(title, "title in 'title_requests'")
    return value


def parse_beat(raw: bytes, limits: Limits) -> tuple[Heartbeat, str]:
    """(the heartbeat, the text the history keeps of it); ClientError for bad input."""
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise ClientError("The body is not UTF-8 text.") from None
    except RecursionError:
        raise ClientError("The body's JSON is nested too deeply.") from None
    except ValueError as exc:
        raise ClientError(f"The body is not valid JSON: {exc}.") from None
    counts: dict[str, int] = {}
    if isinstance(data, dict) and "title_requests" in data:
        counts = title_counts(data.pop("title_requests"), limits)
    beat = decode(Heartbeat, data)
    beat = dataclasses.replace(beat, title_requests=counts)
    check_heartbeat(beat, limits.max_titles, limits.max_count, titles=False)
    return beat, history_body(beat, raw.decode(), limits.detail_chars)


async def parse_off_loop(raw: bytes, limits: Limits) -> tuple[Heartbeat, str]:
    if len(raw) <= OFF_LOOP_BYTES:
        return parse_beat(raw, limits)
    return await asyncio.to_thread(parse_beat, raw, limits)
