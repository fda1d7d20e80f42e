"""The OpenAPI 3.1 document of the control API: its schemas, generated from the schema
dataclasses, and the helpers its route table (`origin.control.api`) describes operations
with; `build` puts the two together.

Types come from `vcdn.schemas` (the same classes `decode` checks against), so the document
cannot drift from the decoder; the few checks `validate.py` adds on top are restated in
`CONSTRAINTS`. Response bodies are closed (``additionalProperties: false``) so that the
schemathesis run in the tests catches any field the server adds without documenting it.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any, Final, Literal, get_args, get_origin

from origin.control.routetable import Route, paths
from origin.control.settings import ControlSettings
from origin.control.validate import (
    ID_PATTERN,
    MAX_CHECKS,
    MAX_PATH_CHARS,
    MAX_PREFIXES,
    MAX_SIZE,
    SHA256_PATTERN,
)
from vcdn import responses
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

#: The answers (and the key service's two request bodies), `vcdn.responses`.
RESPONSES: Final = (
    responses.TitleSummary,
    responses.TitleList,
    responses.TitleRegistered,
    responses.KeyRegistration,
    responses.KeyRegistered,
    responses.ClearKeyRequest,
    responses.ClearKey,
    responses.ClearKeyLicense,
    responses.HeartbeatAck,
    responses.ApplianceList,
    responses.StoredHeartbeat,
    responses.HeartbeatHistory,
    responses.Deleted,
    responses.Score,
    responses.Popularity,
    responses.PredictedScore,
    responses.PredictedPopularity,
    responses.Enrolled,
    responses.EnrollmentList,
    responses.TokenIssued,
    responses.TokensRevoked,
    responses.JobsStatus,
    responses.Health,
    responses.Error,
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
HEX32: Final = {"pattern": "^[0-9a-f]{32}$"}
B64: Final = {"pattern": "^[A-Za-z0-9_-]{22}$"}

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
    ("ApplianceList", "next"): {
        "description": "Paged form only: the `after` of the next page; null on the last.",
    },
    ("KeyRegistration", "key"): HEX32,
    ("KeyRegistered", "kid"): HEX32,
    ("ClearKeyRequest", "kids"): {
        "minItems": 1, "maxItems": 16,
        "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]{22}(==)?$"},
    },
    ("ClearKey", "k"): B64,
    ("ClearKey", "kid"): B64,
    ("Enrolled", "token"): {"description": "The appliance's token, shown once."},
    ("Error", "error"): {"description": "A stable machine-readable code."},
    ("Error", "detail"): {"description": "A sentence saying what to fix."},
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


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


NUMBER: Final = {"type": "number"}


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
            *RESPONSES,
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
    return schemas


def error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref("Error")}}}


ERRORS: Final = {
    "400": "Malformed request: bad JSON, a wrong type, a missing or unknown field, a bad id.",
    "401": "No valid bearer token.",
    "403": "The token's role may not do this (or is bound to another appliance).",
    "404": "Unknown title or appliance.",
    "409": "It exists already.",
    "413": "The body is larger than the server's limit.",
    "503": "The database is unavailable; retry later.",
}


def op(
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
        responses[code] = error(ERRORS[code])
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if roles:
        op["description"] = f"Roles: {roles}."
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    return op


def json_response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


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


def build(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI document of `routes` (the app's route table, `origin.control.api`)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vcdn control API",
            "version": "1",
            "description": "Catalog, appliances, heartbeats, popularity and fill manifests.",
        },
        "security": [{"bearer": []}],
        "paths": paths(routes),
        "components": {
            "schemas": _components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
