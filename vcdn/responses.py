"""The control API's answers, defined once: the server encodes them, the client decodes
them (`vcdn.control_client`) and the OpenAPI document describes them (`origin.control.
openapi` generates each schema from the dataclass, closed: an undocumented field fails
the schemathesis run). Requests are in `vcdn.schemas`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vcdn.schemas import ApplianceState, ApplianceView, EnrollmentView, Heartbeat

# --- titles ---


@dataclass(frozen=True)
class TitleSummary:
    """One item of `GET /titles`: enough to list, without the file list."""

    title: str
    duration: float
    format: Literal["fmp4", "ts"]
    live: bool
    version: int
    renditions: int
    files: int
    total_bytes: int
    registered_at: float
    updated_at: float
    popularity: float


@dataclass(frozen=True)
class TitleList:
    titles: list[TitleSummary]


@dataclass(frozen=True)
class TitleRegistered:
    """`POST /titles`: the title, whether it is new, and what it holds."""

    title: str
    created: bool
    files: int
    total_bytes: int


# --- content keys ---


@dataclass(frozen=True)
class KeyRegistration:
    """`PUT /titles/{id}/keys/{kid}`."""

    scheme: Literal["aes-128", "cenc"]
    key: str


@dataclass(frozen=True)
class KeyRegistered:
    title: str
    kid: str
    created: bool


@dataclass(frozen=True)
class ClearKeyRequest:
    """The license request of W3C Encrypted Media Extensions' ClearKey."""

    kids: list[str]
    type: Literal["temporary", "persistent-license"] = "temporary"


@dataclass(frozen=True)
class ClearKey:
    """One JSON Web Key of a ClearKey license (RFC 7517, base64url without padding)."""

    kty: Literal["oct"]
    k: str
    kid: str


@dataclass(frozen=True)
class ClearKeyLicense:
    keys: list[ClearKey]
    type: str


# --- appliances ---


@dataclass(frozen=True)
class HeartbeatAck:
    """What the control plane answers to a heartbeat."""

    state: ApplianceState
    heartbeat_interval: float


@dataclass(frozen=True)
class ApplianceList:
    """`GET /appliances`: every appliance with its computed state; `next`: the cursor of
    the following page (paged form only, None on the last page)."""

    appliances: list[ApplianceView]
    heartbeat_interval: float
    generated_at: float
    next: str | None = None


@dataclass(frozen=True)
class StoredHeartbeat:
    at: float
    heartbeat: Heartbeat


@dataclass(frozen=True)
class HeartbeatHistory:
    appliance: str
    heartbeats: list[StoredHeartbeat]


@dataclass(frozen=True)
class Deleted:
    """A decommissioned appliance, and how many of its tokens stopped working."""

    deleted: str
    revoked: int


@dataclass(frozen=True)
class Score:
    title: str
    site: str
    score: float


@dataclass(frozen=True)
class Popularity:
    generated_at: float
    half_life: float
    scores: list[Score]


@dataclass(frozen=True)
class PredictedScore:
    title: str
    score: float


@dataclass(frozen=True)
class PredictedPopularity:
    generated_at: float
    site: str
    half_life: float
    predicted: list[PredictedScore]


# --- enrolments ---


@dataclass(frozen=True)
class Enrolled:
    enrollment: EnrollmentView
    token: str


@dataclass(frozen=True)
class EnrollmentList:
    enrollments: list[EnrollmentView]


@dataclass(frozen=True)
class TokenIssued:
    appliance: str
    token: str
    revoked: int


@dataclass(frozen=True)
class TokensRevoked:
    appliance: str
    revoked: int


# --- the service ---


@dataclass(frozen=True)
class JobsStatus:
    """This replica's view of the periodic jobs."""

    leader: bool
    takeovers: int
    plans: int


@dataclass(frozen=True)
class Health:
    status: str
    store: str
    schema_version: int
    jobs: JobsStatus
    #: The plan epoch every replica serves.
    plan_epoch: int


@dataclass(frozen=True)
class Error:
    """Every error answer (`origin.control.http_common`)."""

    error: str
    detail: str
