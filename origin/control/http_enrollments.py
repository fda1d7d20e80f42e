"""Handlers of enrolment: the operator admits an appliance and holds its credential.

An enrolment names the appliance, its site and the client prefixes it may serve, and
mints the one kind of appliance token there is: bound to that appliance. Rotating or
revoking the token deletes the old ones and clears this server's token cache, so the
old token stops working on the next request.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Final

from aiohttp import web

from origin.control.auth import Principal, hash_token, new_token
from origin.control.http_common import (
    BEATS,
    CLOCK,
    SETTINGS,
    STORE,
    forget_tokens,
    log,
    read_body,
    require,
    respond,
)
from origin.control.store import EnrollmentRecord
from origin.control.validate import check_id
from vcdn.errors import ClientError, Conflict, NotFound
from vcdn.logs import event
from vcdn.prefixes import check_width, keep_approved
from vcdn.responses import Enrolled, EnrollmentList, TokenIssued, TokensRevoked
from vcdn.schemas import Enrollment, EnrollmentView, encode

OPERATORS: Final = frozenset({"operator"})
READERS: Final = frozenset({"operator", "appliance"})
MAX_LABEL: Final = 200

def view_of(e: EnrollmentRecord) -> EnrollmentView:
    return EnrollmentView(e.id, e.site, e.prefixes, e.label, e.created_at, e.updated_at)


def checked(request: web.Request, body: Enrollment) -> list[str]:
    """The enrolment's prefixes, normalised, after the same width rules as registrations."""
    check_id(body.id, "appliance id")
    check_id(body.site, "site")
    if len(body.label) > MAX_LABEL:
        raise ClientError(f"'label' must be at most {MAX_LABEL} characters")
    s = request.app[SETTINGS]
    nets = check_width(body.prefixes, s.max_prefix_v4, s.max_prefix_v6)
    return list(dict.fromkeys(str(n) for n in nets))


async def mint(request: web.Request, appliance: str, label: str) -> str:
    token = new_token()
    now = request.app[CLOCK]()
    await request.app[STORE].add_token(hash_token(token), Principal("appliance", appliance),
                                       label, now)
    return token


async def enrolled(request: web.Request, appliance: str) -> EnrollmentRecord:
    record = await request.app[STORE].get_enrollment(appliance)
    if record is None:
        raise NotFound(f"Appliance {appliance!r} is not enrolled; POST /api/v1/enrollments.")
    return record


async def enroll(request: web.Request) -> web.Response:
    await require(request, OPERATORS)
    body = await read_body(request, Enrollment)
    prefixes = checked(request, body)
    store = request.app[STORE]
    if await store.get_enrollment(body.id) is not None:
        raise Conflict(
            f"Appliance {body.id!r} is already enrolled; PUT /api/v1/enrollments/{body.id} "
            "changes it, POST .../token issues a new token."
        )
    now = request.app[CLOCK]()
    record = EnrollmentRecord(body.id, body.site, prefixes, body.label, now, now)
    await store.put_enrollment(record)
    token = await mint(request, body.id, body.label or f"enrolled {time.strftime('%Y-%m-%d')}")
    event(log, "appliance_enrolled", appliance=body.id, site=body.site, prefixes=len(prefixes))
    return respond(encode(Enrolled(view_of(record), token)), status=201)


async def list_enrollments(request: web.Request) -> web.Response:
    await require(request, OPERATORS)
    records = await request.app[STORE].list_enrollments()
    return respond(encode(EnrollmentList([view_of(e) for e in records])))


async def get_enrollment(request: web.Request) -> web.Response:
    """The operator, or the appliance itself (it filters BGP-learned prefixes by this)."""
    appliance = check_id(request.match_info["id"], "appliance id")
    await require(request, READERS, appliance=appliance)
    return respond(encode(view_of(await enrolled(request, appliance))))


async def update_enrollment(request: web.Request) -> web.Response:
    """Change site, prefixes or label; the registered record shrinks to what is approved."""
    appliance = check_id(request.match_info["id"], "appliance id")
    await require(request, OPERATORS)
    body = await read_body(request, Enrollment)
    if body.id != appliance:
        raise Conflict(f"The body names appliance {body.id!r}, the path {appliance!r}.")
    prefixes = checked(request, body)
    store = request.app[STORE]
    old = await enrolled(request, appliance)
    now = request.app[CLOCK]()
    record = EnrollmentRecord(appliance, body.site, prefixes, body.label, old.created_at, now)
    await store.put_enrollment(record)
    current = await store.get_appliance(appliance)
    if current is not None:
        kept, dropped = keep_approved(current.prefixes, prefixes)
        if dropped or current.site != body.site:
            await request.app[BEATS].flush()
            changed = replace(current.registration, site=body.site, prefixes=kept)
            await store.put_appliance(changed, now)
            event(log, "appliance_narrowed", appliance=appliance, dropped=dropped,
                  site=body.site)
    event(log, "enrollment_changed", appliance=appliance, site=body.site, prefixes=len(prefixes))
    return respond(encode(view_of(record)))


async def rotate(request: web.Request) -> web.Response:
    """A new token for the appliance; every older one stops working now."""
    appliance = check_id(request.match_info["id"], "appliance id")
    await require(request, OPERATORS)
    record = await enrolled(request, appliance)
    revoked = await request.app[STORE].revoke_subject(appliance)
    forget_tokens(request)
    token = await mint(request, appliance, record.label or "rotated")
    event(log, "appliance_token_rotated", appliance=appliance, revoked=revoked)
    return respond(encode(TokenIssued(appliance, token, revoked)), status=201)


async def revoke(request: web.Request) -> web.Response:
    """Every token of the appliance stops working now (a box was stolen or retired)."""
    appliance = check_id(request.match_info["id"], "appliance id")
    await require(request, OPERATORS)
    await enrolled(request, appliance)
    revoked = await request.app[STORE].revoke_subject(appliance)
    forget_tokens(request)
    event(log, "appliance_token_revoked", appliance=appliance, revoked=revoked)
    return respond(encode(TokensRevoked(appliance, revoked)))
