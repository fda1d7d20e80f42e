"""What a hit owner hands the hit connection protocol (`vcdn.httpserve.hitproto`).

An owner (the origin's hot files, the edge's store) answers a parsed request head with
the whole answer's bytes (head and a body held in RAM or read at once), a `Large` (head,
file and plan of a body sent with sendfile, or pread and write where the transport has
no socket), or None: not mine, aiohttp's application answers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vcdn.httpserve.fasthead import Head
from vcdn.httpserve.plan import Plan


@dataclass(frozen=True, slots=True)
class Large:
    """A hit whose body is sent from its file: the exact head, the file and the plan."""

    head: bytes
    file: str
    plan: Plan


#: An owner's answer to one request head (see the module doc).
Answer = Callable[[Head], bytes | Large | None]
