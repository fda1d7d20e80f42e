"""The OpenAPI 3.1 document of the control API, generated from the schema dataclasses.

Types come from `vcdn.schemas` (the same classes `decode` checks against), so the document
cannot drift from the decoder; the few checks `validate.py` adds on top are restated in
`CONSTRAINTS`. Response bodies are closed (``additionalProperties: false``) so that the
schemathesis run in the tests catches any field the server adds without documenting it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import types
import typing
from typing import Any, Final, Literal, get_args, get_origin

from origin.control.settings import ControlSettings
from origin.control.validate import (
    ID_PATTERN,
    MAX_CHECKS,
    MAX_PATH_CHARS,
    MAX_PREFIXES,
    MAX_SIZE,
    SHA256_PATTERN,
)
from origin.control.web.routes import OPENAPI_PATHS as WEB_PATHS
from vcdn.schemas import (
    ApplianceView,
    Check,
    Enrollment,
    EnrollmentView,
    FileEntry,
    FillManifest,
    FillTitle,
    Heartbeat,
    Load,
    Registration,
    Rendition,
    TitleManifest,
)

INT64: Final = {"minimum": -(2**63), "maximum": 2**63 - 1}
NON_NEGATIVE: Final = {"minimum": 0}
PATH: Final = {
    "minLength": 1,
    "maxLength": MAX_PATH_CHARS,
    "pattern": r"^[^/\\\x00]+(/[^/\\\x00]+)*$",
    "description": "A relative path inside the title; '.' and '..' segments are rejected.",
}
ID: Final = {"pattern": ID_PATTERN}

CONSTRAINTS: Final[dict[tuple[str, str], dict[str, Any]]] = {
    ("TitleManifest", "title"): ID,
    ("TitleManifest", "duration"): NON_NEGATIVE,
    ("TitleManifest", "segment_seconds"): NON_NEGATIVE,
    ("FileEntry", "path"): PATH,
    ("FileEntry", "size"): {"minimum": 0, "maximum": MAX_SIZE},
    ("FileEntry", "sha256"): {"pattern": SHA256_PATTERN},
    ("Rendition", "width"): NON_NEGATIVE,
    ("Rendition", "height"): NON_NEGATIVE,
    ("Rendition", "bandwidth"): NON_NEGATIVE,
    ("Rendition", "average_bandwidth"): NON_NEGATIVE,
    ("Rendition", "frame_rate"): NON_NEGATIVE,
    ("Rendition", "playlist"): PATH,
    ("Registration", "id"): ID,
    ("Registration", "site"): ID,
    ("Registration", "public_url"): {"pattern": "^https?://", "maxLength": 2048},
    ("Registration", "tls_url"): {"pattern": "^(https://.*)?$", "maxLength": 2048},
    ("Registration", "capacity_bytes"): {"minimum": 0, "maximum": MAX_SIZE * 1024},
    ("Registration", "asn"): {"minimum": 0, "maximum": 4294967295},
    ("Registration", "lat"): {"minimum": -90, "maximum": 90},
    ("Registration", "lon"): {"minimum": -180, "maximum": 180},
    ("Registration", "prefixes"): {"maxItems": MAX_PREFIXES},
    ("Heartbeat", "free_bytes"): NON_NEGATIVE,
    ("Heartbeat", "used_bytes"): NON_NEGATIVE,
    ("Heartbeat", "objects"): NON_NEGATIVE,
    ("Heartbeat", "bytes_served"): NON_NEGATIVE,
    ("Heartbeat", "hit_ratio"): {"minimum": 0, "maximum": 1},
    ("Load", "requests_per_s"): NON_NEGATIVE,
    ("Load", "bytes_per_s"): NON_NEGATIVE,
    ("Load", "connections"): NON_NEGATIVE,
}


def _type_schema(hint: Any) -> dict[str, Any]:
    origin = get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        base = _type_schema(args[0])
        if "type" in base:
            return base | {"type": [base["type"], "null"]}
        return {"anyOf": [base, {"type": "null"}]}
    if origin is Literal:
        values = list(get_args(hint))
        return {"type": "string", "enum": values}
    if origin in (list, tuple):
        return {"type": "array", "items": _type_schema(get_args(hint)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(get_args(hint)[1])}
    if dataclasses.is_dataclass(hint):
        return {"$ref": f"#/components/schemas/{hint.__name__}"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer", "format": "int64", **INT64}
    if hint is float:
        return {"type": "number", "format": "double"}
    if hint is str:
        return {"type": "string"}
    raise TypeError(f"no JSON schema for {hint!r}")


def dataclass_schema(cls: type) -> dict[str, Any]:
    """A closed JSON schema: fields without a default are required."""
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name])
        extra = CONSTRAINTS.get((cls.__name__, f.name))
        if extra:
            prop = prop | extra
        props[f.name] = prop
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


NUMBER: Final = {"type": "number"}
STRING: Final = {"type": "string"}
INTEGER: Final = {"type": "integer"}
BOOLEAN: Final = {"type": "boolean"}


def _components() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        cls.__name__: dataclass_schema(cls)
        for cls in (
            TitleManifest,
            Rendition,
            FileEntry,
            Registration,
            Enrollment,
            EnrollmentView,
            Load,
            Check,
            Heartbeat,
            ApplianceView,
            FillTitle,
            FillManifest,
        )
    }
    # Heartbeat title counts are keyed by title id and never negative.
    counts = schemas["Heartbeat"]["properties"]["title_requests"]
    # Defaults of heartbeat_max_count and heartbeat_max_titles (docs/security.md).
    top = ControlSettings.heartbeat_max_count
    counts["additionalProperties"] = {"type": "integer", "minimum": 0, "maximum": top}
    counts["propertyNames"] = {"pattern": ID_PATTERN}
    counts["maxProperties"] = ControlSettings.heartbeat_max_titles
    schemas["Heartbeat"]["properties"]["checks"]["maxProperties"] = MAX_CHECKS
    detail = copy.deepcopy(schemas["TitleManifest"])
    detail["properties"]["popularity"] = NUMBER
    detail["required"] = [*detail["required"], "popularity"]
    schemas["TitleDetail"] = detail
    schemas["TitleSummary"] = _obj(
        {
            "title": STRING,
            "duration": NUMBER,
            "format": {"type": "string", "enum": ["fmp4", "ts"]},
            "live": {"type": "boolean"},
            "version": INTEGER,
            "renditions": INTEGER,
            "files": INTEGER,
            "total_bytes": INTEGER,
            "registered_at": NUMBER,
            "updated_at": NUMBER,
            "popularity": NUMBER,
        }
    )
    schemas["TitleList"] = _obj({"titles": {"type": "array", "items": _ref("TitleSummary")}})
    schemas["TitleRegistered"] = _obj(
        {
            "title": STRING,
            "created": {"type": "boolean"},
            "files": INTEGER,
            "total_bytes": INTEGER,
        }
    )
    schemas["ApplianceList"] = _obj(
        {
            "appliances": {"type": "array", "items": _ref("ApplianceView")},
            "heartbeat_interval": NUMBER,
            "generated_at": NUMBER,
            "next": {
                "type": ["string", "null"],
                "description": "Paged form only: the `after` of the next page; null on the last.",
            },
        },
        required=["appliances", "heartbeat_interval", "generated_at"],
    )
    schemas["HeartbeatAck"] = _obj(
        {
            "state": {"type": "string", "enum": ["healthy", "stale", "draining", "down"]},
            "heartbeat_interval": NUMBER,
        }
    )
    schemas["HeartbeatHistory"] = _obj(
        {
            "appliance": STRING,
            "heartbeats": {
                "type": "array",
                "items": _obj({"at": NUMBER, "heartbeat": _ref("Heartbeat")}),
            },
        }
    )
    schemas["Popularity"] = _obj(
        {
            "generated_at": NUMBER,
            "half_life": NUMBER,
            "scores": {
                "type": "array",
                "items": _obj({"title": STRING, "site": STRING, "score": NUMBER}),
            },
        }
    )
    schemas["PredictedPopularity"] = _obj(
        {
            "generated_at": NUMBER,
            "site": STRING,
            "half_life": NUMBER,
            "predicted": {
                "type": "array",
                "items": _obj({"title": STRING, "score": NUMBER}),
            },
        }
    )
    schemas["Enrolled"] = _obj(
        {
            "enrollment": _ref("EnrollmentView"),
            "token": {"type": "string", "description": "The appliance's token, shown once."},
        }
    )
    schemas["EnrollmentList"] = _obj(
        {"enrollments": {"type": "array", "items": _ref("EnrollmentView")}}
    )
    schemas["TokenIssued"] = _obj({"appliance": STRING, "token": STRING, "revoked": INTEGER})
    schemas["TokensRevoked"] = _obj({"appliance": STRING, "revoked": INTEGER})
    schemas["Deleted"] = _obj({"deleted": STRING, "revoked": INTEGER})
    schemas["Health"] = _obj(
        {
            "status": STRING,
            "store": STRING,
            "schema_version": INTEGER,
            # This replica's view of the periodic jobs; the plan epoch all replicas serve.
            "jobs": _obj({"leader": BOOLEAN, "takeovers": INTEGER, "plans": INTEGER}),
            "plan_epoch": INTEGER,
        }
    )
    hex32 = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
    b64 = {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}$"}
    schemas["KeyRegistration"] = _obj(
        {"scheme": {"type": "string", "enum": ["aes-128", "cenc"]}, "key": hex32}
    )
    schemas["KeyRegistered"] = _obj({"title": STRING, "kid": hex32, "created": BOOLEAN})
    schemas["ClearKeyRequest"] = _obj(
        {
            "kids": {"type": "array", "minItems": 1, "maxItems": 16,
                     "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}(==)?$"}},
            "type": {"type": "string", "enum": ["temporary", "persistent-license"]},
        },
        required=["kids"],
    )
    schemas["ClearKeyLicense"] = _obj(
        {
            "keys": {"type": "array", "items": _obj(
                {"kty": {"type": "string", "enum": ["oct"]}, "k": b64, "kid": b64}
            )},
            "type": STRING,
        }
    )
    schemas["Error"] = _obj(
        {
            "error": {"type": "string", "description": "A stable machine-readable code."},
            "detail": {"type": "string", "description": "A sentence saying what to fix."},
        }
    )
    return schemas


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


ERRORS: Final = {
    "400": "Malformed request: bad JSON, a wrong type, a missing or unknown field, a bad id.",
    "401": "No valid bearer token.",
    "403": "The token's role may not do this (or is bound to another appliance).",
    "404": "Unknown title or appliance.",
    "409": "It exists already.",
    "413": "The body is larger than the server's limit.",
    "503": "The database is unavailable; retry later.",
}


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    body: str | None = None,
    codes: str = "401 403 503",
    params: list[dict[str, Any]] | None = None,
    roles: str = "",
) -> dict[str, Any]:
    responses = dict(ok)
    for code in codes.split():
        responses[code] = _error(ERRORS[code])
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if roles:
        op["description"] = f"Roles: {roles}."
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


ID_PARAM: Final = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": ID_PATTERN},
}


KID_PARAM: Final = {
    "name": "kid",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
}
KEY_PARAMS: Final = [
    {"name": "token", "in": "path", "required": True, "schema": {"type": "string"},
     "description": "The signed playback token of the appliance URLs (vcdn.tokens)."},
    {"name": "title", "in": "path", "required": True, "schema": {"type": "string"}},
]
DENIED: Final = (
    "Missing, malformed, expired or other-title token: an empty body, nothing more."
)


@functools.cache
def _document() -> dict[str, Any]:
    w = "400 401 403 413 503"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vcdn control API",
            "version": "1",
            "description": "Catalog, appliances, heartbeats, popularity and fill manifests.",
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/titles": {
                "post": _op(
                    "Register or replace a title (from `vcdn package --control`).",
                    {
                        "200": _json("Replaced.", "TitleRegistered"),
                        "201": _json("Registered.", "TitleRegistered"),
                    },
                    body="TitleManifest",
                    codes=w,
                    roles="packager, operator",
                ),
                "get": _op(
                    "List titles.", {"200": _json("Title summaries.", "TitleList")}, roles="any"
                ),
            },
            "/api/v1/titles/{id}": {
                "get": _op(
                    "A title's manifest and its popularity.",
                    {"200": _json("The manifest.", "TitleDetail")},
                    codes="400 401 403 404 503",
                    params=[ID_PARAM],
                    roles="any",
                ),
            },
            "/api/v1/titles/{id}/keys/{kid}": {
                "put": _op(
                    "Store a content key of an encrypted title (`vcdn package --encrypt`), "
                    "before the title is published. Keys live only in the control database.",
                    {
                        "200": _json("Replaced.", "KeyRegistered"),
                        "201": _json("Stored.", "KeyRegistered"),
                    },
                    body="KeyRegistration",
                    codes=w,
                    params=[ID_PARAM, KID_PARAM],
                    roles="packager, operator",
                ),
            },
            "/k/{token}/{title}/{kid}": {
                "get": {
                    "summary": "The 16-byte content key (HLS AES-128 key URI, RFC 8216 5.2) "
                    "for a player whose signed playback token is valid for the title.",
                    "security": [],
                    "parameters": [
                        *KEY_PARAMS,
                        {"name": "kid", "in": "path", "required": True,
                         "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "The key; Cache-Control: no-store.",
                                "content": {"application/octet-stream": {
                                    "schema": {"type": "string", "format": "binary"}}}},
                        "403": {"description": DENIED},
                        "404": _error("The token is valid but the title has no such key."),
                        "503": _error(ERRORS["503"]),
                    },
                },
            },
            "/k/{token}/{title}/clearkey": {
                "post": {
                    "summary": "A W3C ClearKey license (EME) for a player whose signed playback "
                    "token is valid for the title.",
                    "security": [],
                    "parameters": KEY_PARAMS,
                    "requestBody": {"required": True, "content": {
                        "application/json": {"schema": _ref("ClearKeyRequest")}}},
                    "responses": {
                        "200": _json("The keys asked for that the title has.",
                                     "ClearKeyLicense"),
                        "400": _error(ERRORS["400"]),
                        "403": {"description": DENIED},
                        "404": _error("The token is valid but the title has none of the keys."),
                        "413": _error(ERRORS["413"]),
                        "503": _error(ERRORS["503"]),
                    },
                },
            },
            "/k/{tail}": {
                **{
                    method: {
                        "summary": "Any other key-service URL (no token, a wrong shape): 403.",
                        "security": [],
                        "parameters": [{"name": "tail", "in": "path", "required": True,
                                        "schema": {"type": "string"}}],
                        "responses": {"403": {"description": DENIED}},
                    }
                    for method in ("get", "post")
                },
                "options": {
                    "summary": "CORS preflight of the license POST.",
                    "security": [],
                    "parameters": [{"name": "tail", "in": "path", "required": True,
                                    "schema": {"type": "string"}}],
                    "responses": {"204": {"description": "Allowed methods and headers."}},
                },
            },
            "/api/v1/appliances": {
                "post": _op(
                    "Register an appliance (idempotent: the same id updates it).",
                    {
                        "200": _json("Updated.", "ApplianceView"),
                        "201": _json("Registered.", "ApplianceView"),
                    },
                    body="Registration",
                    codes=w,
                    roles="appliance, operator",
                ),
                "get": _op(
                    "Every appliance with its computed state (for steering); with `limit`, "
                    "one page in id order after `after`.",
                    {"200": _json("Appliances.", "ApplianceList")},
                    codes="400 401 403 503",
                    roles="steering, operator, appliance",
                    params=[
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 5000},
                        },
                        {
                            "name": "after",
                            "in": "query",
                            "schema": {"type": "string", "pattern": ID_PATTERN},
                            "description": "The `next` of the previous page.",
                        },
                    ],
                ),
            },
            "/api/v1/enrollments": {
                "post": _op(
                    "Enrol an appliance: id, site, approved client prefixes; returns its token.",
                    {"201": _json("Enrolled; the token is shown only here.", "Enrolled")},
                    body="Enrollment",
                    codes="400 401 403 409 413 503",
                    roles="operator",
                ),
                "get": _op(
                    "Every enrolled appliance.",
                    {"200": _json("Enrolments.", "EnrollmentList")},
                    roles="operator",
                ),
            },
            "/api/v1/enrollments/{id}": {
                "get": _op(
                    "One enrolment (the appliance reads its approved prefixes here).",
                    {"200": _json("The enrolment.", "EnrollmentView")},
                    codes="400 401 403 404 503",
                    params=[ID_PARAM],
                    roles="operator, appliance (its own id)",
                ),
                "put": _op(
                    "Change site, approved prefixes or label; the registration shrinks to fit.",
                    {"200": _json("The enrolment.", "EnrollmentView")},
                    body="Enrollment",
                    codes="400 401 403 404 409 413 503",
                    params=[ID_PARAM],
                    roles="operator",
                ),
            },
            "/api/v1/enrollments/{id}/token": {
                "post": _op(
                    "Rotate: a new token for the appliance; every older one stops working now.",
                    {"201": _json("The new token, shown only here.", "TokenIssued")},
                    codes="400 401 403 404 503",
                    params=[ID_PARAM],
                    roles="operator",
                ),
                "delete": _op(
                    "Revoke every token of the appliance, now.",
                    {"200": _json("Revoked.", "TokensRevoked")},
                    codes="400 401 403 404 503",
                    params=[ID_PARAM],
                    roles="operator",
                ),
            },
            "/api/v1/appliances/{id}": {
                "delete": _op(
                    "Decommission an appliance: forget it and its heartbeat history, revoke "
                    "its tokens.",
                    {"200": _json("Deleted.", "Deleted")},
                    codes="400 401 403 404 503",
                    params=[ID_PARAM],
                    roles="operator",
                ),
            },
            "/api/v1/appliances/{id}/heartbeat": {
                "put": _op(
                    "Report health, load and per-title requests.",
                    {"200": _json("The state the control plane now sees.", "HeartbeatAck")},
                    body="Heartbeat",
                    codes="400 401 403 404 413 503",
                    params=[ID_PARAM],
                    roles="appliance",
                ),
            },
            "/api/v1/appliances/{id}/fill-manifest": {
                "get": _op(
                    "What this appliance should hold, most popular first.",
                    {"200": _json("The fill manifest.", "FillManifest")},
                    codes="400 401 403 404 503",
                    params=[ID_PARAM],
                    roles="appliance (its own id), operator",
                ),
            },
            "/api/v1/appliances/{id}/heartbeats": {
                "get": _op(
                    "Stored heartbeats, oldest first.",
                    {"200": _json("Heartbeat history.", "HeartbeatHistory")},
                    codes="400 401 403 404 503",
                    roles="operator",
                    params=[
                        ID_PARAM,
                        {
                            "name": "since",
                            "in": "query",
                            "schema": {"type": "number"},
                            "description": "Unix time; default 0.",
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                    ],
                ),
            },
            "/api/v1/popularity": {
                "get": _op(
                    "Decayed per-title, per-site popularity scores, highest first.",
                    {"200": _json("Scores.", "Popularity")},
                    codes="400 401 403 503",
                    roles="operator, steering",
                    params=[
                        {
                            "name": "site",
                            "in": "query",
                            "schema": {"type": "string", "pattern": ID_PATTERN},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                        },
                    ],
                ),
            },
            "/api/v1/popularity/predicted": {
                "get": _op(
                    "Predicted demand per title at a site, highest first: decayed counts, a "
                    "share of other sites', and a boost for titles about to premiere "
                    "(origin.control.planning).",
                    {"200": _json("Predictions.", "PredictedPopularity")},
                    codes="400 401 403 503",
                    roles="operator, steering",
                    params=[
                        {
                            "name": "site",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "pattern": ID_PATTERN},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                        },
                    ],
                ),
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This document.",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1 document.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                },
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness, with the store kind and schema version.",
                    "security": [],
                    "responses": {"200": _json("Up.", "Health"), "503": _error(ERRORS["503"])},
                },
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics.",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "Text exposition format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                },
            },
            **WEB_PATHS,  # the player and dashboard pages (origin/control/web)
        },
        "components": {
            "schemas": _components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy: callers may not change the cached one)."""
    return copy.deepcopy(_document())


@functools.cache
def document_text() -> str:
    """The document as JSON text, serialised once."""
    return json.dumps(_document(), separators=(",", ":"))
