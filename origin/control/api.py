"""The control app's route table: every route it serves, with its OpenAPI operation.

`make_app` mounts `table()` on its router and serves the document built from the same
table (`document_text`), so the two cannot disagree. Order matters: the router takes the
first match (``/k/{token}/{title}/{kid}`` before the ``/k/{tail}`` catch-all).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Final

from origin.control import (
    http_appliances,
    http_enrollments,
    http_keys,
    http_meta,
    http_titles,
)
from origin.control.openapi import (
    DENIED,
    ERRORS,
    ID_PARAM,
    KEY_PARAMS,
    KID_PARAM,
    build,
    error,
    json_response,
    op,
    ref,
)
from origin.control.planning import http as planning_http
from origin.control.routetable import Route
from origin.control.validate import ID_PATTERN
from origin.control.web import routes as web_routes
from vcdn.metrics import metrics_handler

#: The codes of a write: a bad body, no or the wrong token, too large, no database.
W: Final = "400 401 403 413 503"
ONE: Final = "400 401 403 404 503"
TAIL: Final = [{"name": "tail", "in": "path", "required": True, "schema": {"type": "string"}}]
_K_TAIL: Final = "/k/{tail:[\\s\\S]*}"


def _limit(maximum: int) -> dict[str, Any]:
    return {"name": "limit", "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": maximum}}


def _site(required: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "site", "in": "query",
                           "schema": {"type": "string", "pattern": ID_PATTERN}}
    if required:
        out["required"] = True
    return out


def _other_key_url(method: str) -> Route:
    return Route(method, "/k/{tail}", http_keys.other, {
        "summary": "Any other key-service URL (no token, a wrong shape): 403.",
        "security": [],
        "parameters": TAIL,
        "responses": {"403": {"description": DENIED}},
    }, pattern=_K_TAIL)


API: Final[tuple[Route, ...]] = (
    # --- titles ---------------------------------------------------------------------------
    Route("POST", "/api/v1/titles", http_titles.post_title, op(
        "Register or replace a title (from `vcdn package --control`).",
        {"200": json_response("Replaced.", "TitleRegistered"),
         "201": json_response("Registered.", "TitleRegistered")},
        body="TitleManifest", codes=W, roles="packager, operator",
    )),
    Route("GET", "/api/v1/titles", http_titles.list_titles, op(
        "List titles.", {"200": json_response("Title summaries.", "TitleList")}, roles="any",
    )),
    Route("GET", "/api/v1/titles/{id}", http_titles.get_title, op(
        "A title's manifest and its popularity.",
        {"200": json_response("The manifest.", "TitleDetail")},
        codes=ONE, params=[ID_PARAM], roles="any",
    )),
    # --- content keys ---------------------------------------------------------------------
    Route("PUT", "/api/v1/titles/{id}/keys/{kid}", http_keys.put_key, op(
        "Store a content key of an encrypted title (`vcdn package --encrypt`), "
        "before the title is published. Keys live only in the control database.",
        {"200": json_response("Replaced.", "KeyRegistered"),
         "201": json_response("Stored.", "KeyRegistered")},
        body="KeyRegistration", codes=W, params=[ID_PARAM, KID_PARAM],
        roles="packager, operator",
    )),
    Route("GET", "/k/{token}/{title}/{kid}", http_keys.get_key, {
        "summary": "The 16-byte content key (HLS AES-128 key URI, RFC 8216 5.2) "
        "for a player whose signed playback token is valid for the title.",
        "security": [],
        "parameters": [
            *KEY_PARAMS,
            {"name": "kid", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        "responses": {
            "200": {"description": "The key; Cache-Control: no-store.",
                    "content": {"application/octet-stream": {
                        "schema": {"type": "string", "format": "binary"}}}},
            "403": {"description": DENIED},
            "404": error("The token is valid but the title has no such key."),
            "503": error(ERRORS["503"]),
        },
    }),
    Route("POST", "/k/{token}/{title}/clearkey", http_keys.clearkey, {
        "summary": "A W3C ClearKey license (EME) for a player whose signed playback "
        "token is valid for the title.",
        "security": [],
        "parameters": KEY_PARAMS,
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": ref("ClearKeyRequest")}}},
        "responses": {
            "200": json_response("The keys asked for that the title has.", "ClearKeyLicense"),
            "400": error(ERRORS["400"]),
            "403": {"description": DENIED},
            "404": error("The token is valid but the title has none of the keys."),
            "413": error(ERRORS["413"]),
            "503": error(ERRORS["503"]),
        },
    }),
    Route("OPTIONS", "/k/{tail}", http_keys.other, {
        "summary": "CORS preflight of the license POST.",
        "security": [],
        "parameters": TAIL,
        "responses": {"204": {"description": "Allowed methods and headers."}},
    }, pattern=_K_TAIL),
    _other_key_url("POST"),
    _other_key_url("GET"),
    # --- appliances -----------------------------------------------------------------------
    Route("POST", "/api/v1/appliances", http_appliances.register, op(
        "Register an appliance (idempotent: the same id updates it).",
        {"200": json_response("Updated.", "ApplianceView"),
         "201": json_response("Registered.", "ApplianceView")},
        body="Registration", codes=W, roles="appliance, operator",
    )),
    Route("DELETE", "/api/v1/appliances/{id}", http_appliances.decommission, op(
        "Decommission an appliance: forget it and its heartbeat history, revoke its tokens.",
        {"200": json_response("Deleted.", "Deleted")},
        codes=ONE, params=[ID_PARAM], roles="operator",
    )),
    Route("PUT", "/api/v1/appliances/{id}/heartbeat", http_appliances.heartbeat, op(
        "Report health, load and per-title requests.",
        {"200": json_response("The state the control plane now sees.", "HeartbeatAck")},
        body="Heartbeat", codes="400 401 403 404 413 503", params=[ID_PARAM],
        roles="appliance",
    )),
    Route("GET", "/api/v1/appliances", http_appliances.list_appliances, op(
        "Every appliance with its computed state (for steering); with `limit`, "
        "one page in id order after `after`.",
        {"200": json_response("Appliances.", "ApplianceList")},
        codes="400 401 403 503", roles="steering, operator, appliance",
        params=[
            _limit(5000),
            {"name": "after", "in": "query", "schema": {"type": "string", "pattern": ID_PATTERN},
             "description": "The `next` of the previous page."},
        ],
    )),
    Route("GET", "/api/v1/appliances/{id}/fill-manifest", http_appliances.fill_manifest, op(
        "What this appliance should hold, most popular first.",
        {"200": json_response("The fill manifest.", "FillManifest")},
        codes=ONE, params=[ID_PARAM], roles="appliance (its own id), operator",
    )),
    Route("GET", "/api/v1/appliances/{id}/heartbeats", http_appliances.heartbeat_history, op(
        "Stored heartbeats, oldest first.",
        {"200": json_response("Heartbeat history.", "HeartbeatHistory")},
        codes=ONE, roles="operator",
        params=[
            ID_PARAM,
            {"name": "since", "in": "query", "schema": {"type": "number"},
             "description": "Unix time; default 0."},
            _limit(1000),
        ],
    )),
    Route("GET", "/api/v1/popularity", http_appliances.scores, op(
        "Decayed per-title, per-site popularity scores, highest first.",
        {"200": json_response("Scores.", "Popularity")},
        codes="400 401 403 503", roles="operator, steering", params=[_site(), _limit(10000)],
    )),
    # --- enrolments -----------------------------------------------------------------------
    Route("POST", "/api/v1/enrollments", http_enrollments.enroll, op(
        "Enrol an appliance: id, site, approved client prefixes; returns its token.",
        {"201": json_response("Enrolled; the token is shown only here.", "Enrolled")},
        body="Enrollment", codes="400 401 403 409 413 503", roles="operator",
    )),
    Route("GET", "/api/v1/enrollments", http_enrollments.list_enrollments, op(
        "Every enrolled appliance.",
        {"200": json_response("Enrolments.", "EnrollmentList")}, roles="operator",
    )),
    Route("GET", "/api/v1/enrollments/{id}", http_enrollments.get_enrollment, op(
        "One enrolment (the appliance reads its approved prefixes here).",
        {"200": json_response("The enrolment.", "EnrollmentView")},
        codes=ONE, params=[ID_PARAM], roles="operator, appliance (its own id)",
    )),
    Route("PUT", "/api/v1/enrollments/{id}", http_enrollments.update_enrollment, op(
        "Change site, approved prefixes or label; the registration shrinks to fit.",
        {"200": json_response("The enrolment.", "EnrollmentView")},
        body="Enrollment", codes="400 401 403 404 409 413 503", params=[ID_PARAM],
        roles="operator",
    )),
    Route("POST", "/api/v1/enrollments/{id}/token", http_enrollments.rotate, op(
        "Rotate: a new token for the appliance; every older one stops working now.",
        {"201": json_response("The new token, shown only here.", "TokenIssued")},
        codes=ONE, params=[ID_PARAM], roles="operator",
    )),
    Route("DELETE", "/api/v1/enrollments/{id}/token", http_enrollments.revoke, op(
        "Revoke every token of the appliance, now.",
        {"200": json_response("Revoked.", "TokensRevoked")},
        codes=ONE, params=[ID_PARAM], roles="operator",
    )),
    # --- planning -------------------------------------------------------------------------
    Route("GET", "/api/v1/popularity/predicted", planning_http.predicted, op(
        "Predicted demand per title at a site, highest first: decayed counts, a "
        "share of other sites', and a boost for titles about to premiere "
        "(origin.control.planning).",
        {"200": json_response("Predictions.", "PredictedPopularity")},
        codes="400 401 403 503", roles="operator, steering",
        params=[_site(required=True), _limit(10000)],
    )),
    # --- the service itself ---------------------------------------------------------------
    Route("GET", "/api/v1/openapi.json", http_meta.openapi, {
        "summary": "This document.",
        "security": [],
        "responses": {"200": {
            "description": "OpenAPI 3.1 document.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }},
    }),
    Route("GET", "/healthz", http_meta.healthz, {
        "summary": "Liveness, with the store kind and schema version.",
        "security": [],
        "responses": {"200": json_response("Up.", "Health"), "503": error(ERRORS["503"])},
    }),
    Route("GET", "/metrics", metrics_handler, {
        "summary": "Prometheus metrics.",
        "security": [],
        "responses": {"200": {
            "description": "Text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }},
    }),
)


def table(node_modules: Path = web_routes.NODE_MODULES) -> tuple[Route, ...]:
    """Every route of the control app: the API, then the web pages (origin/control/web)."""
    return (*API, *web_routes.routes(node_modules))


@functools.cache
def document_text() -> str:
    """The OpenAPI document of `table()` as JSON text, serialised once."""
    return json.dumps(build(table()), separators=(",", ":"))


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy)."""
    return json.loads(document_text())
