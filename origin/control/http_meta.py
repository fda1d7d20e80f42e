"""Handlers of the service itself: `/healthz` and the OpenAPI document."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from origin.control.http_common import STORE, respond
from origin.control.jobs import JOBS
from vcdn.responses import Health, JobsStatus
from vcdn.schemas import encode

#: The OpenAPI document as JSON text (`origin.control.api.document_text`).
DOCUMENT: Final = web.AppKey("control_openapi_text", str)


async def healthz(request: web.Request) -> web.Response:
    store = request.app[STORE]
    version = await store.schema_version()
    jobs = request.app[JOBS]
    # Whether this replica runs the periodic jobs, and the plan every replica serves.
    jobs_status = JobsStatus(jobs.leader, jobs.takeovers, jobs.plans)
    health = Health("ok", store.kind, version, jobs_status, await store.plan_epoch())
    return respond(encode(health))


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=request.app[DOCUMENT], content_type="application/json")
