"""The shared data contracts: title manifests, appliance registration, heartbeats, the
appliance view steering reads, and fill manifests.

Each is a frozen dataclass with strict decoding (`decode`): wrong types, missing fields and
unknown fields raise `ClientError` naming the field, so every service rejects bad JSON the
same way and says precisely what is wrong. `encode` gives plain JSON-ready dicts.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin

from vcdn.errors import ClientError

T = TypeVar("T")

HealthState = Literal["healthy", "draining", "unhealthy"]
ApplianceState = Literal["healthy", "stale", "draining", "down"]


def _check(value: Any, hint: Any, where: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check(value, arg, where)
            except ClientError as exc:
                errors.append(str(exc))
        raise ClientError(errors[0] if errors else f"'{where}' must not be null")
    if origin is Literal:
        if value not in get_args(hint):
            choices = ", ".join(repr(c) for c in get_args(hint))
            raise ClientError(f"'{where}' must be one of {choices}, not {value!r}")
        return value
    if origin is list or origin is tuple:
        if not isinstance(value, list):
            raise ClientError(f"'{where}' must be a list")
        item = get_args(hint)[0]
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ClientError(f"'{where}' must be an object")
        _, item = get_args(hint)
        return {str(k): _check(v, item, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return decode(hint, value, where)  # type: ignore[arg-type]
    if hint is bool:
        if not isinstance(value, bool):
            raise ClientError(f"'{where}' must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ClientError(f"'{where}' must be an integer")
        if not -(2**63) <= value < 2**63:
            raise ClientError(f"'{where}' is out of range")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ClientError(f"'{where}' must be a number")
        if value != value or value in (float("inf"), float("-inf")):
            raise ClientError(f"'{where}' must be a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ClientError(f"'{where}' must be a string")
        return value
    raise TypeError(f"unsupported schema type {hint!r}")


@functools.cache
def _layout(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """Type hints and fields of a schema class, resolved once: `get_type_hints` evaluates
    string annotations on every call, which dominated the cost of decoding a heartbeat."""
    return typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


def decode(cls: type[T], data: Any, where: str = "body") -> T:
    """Strictly decode `data` into dataclass `cls`; raises ClientError naming the field."""
    if not isinstance(data, dict):
        raise ClientError(f"'{where}' must be a JSON object")
    hints, fields = _layout(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ClientError(f"unknown field '{unknown[0]}' in {where}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        path = name if where == "body" else f"{where}.{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ClientError(f"missing field '{path}'")
            continue
        values[name] = _check(data[name], hints[name], path)
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def encode(obj: Any) -> Any:
    """A dataclass (or nested structure of them) as plain JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    return obj


# --- titles (written by the packager as manifest.json, registered with the control API) ---


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int
    height: int
    bandwidth: int
    average_bandwidth: int
    codecs: str
    frame_rate: float
    playlist: str


@dataclass(frozen=True)
class TitleManifest:
    """What `manifest.json` holds and what `POST /api/v1/titles` takes."""

    title: str
    duration: float
    segment_seconds: float
    format: Literal["fmp4", "ts"]
    single_file: bool
    renditions: list[Rendition]
    files: list[FileEntry]
    version: int = 1
    created_at: str = ""
    release_at: str | None = None
    live: bool = False

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class LiveAudio:
    """A live event's audio rendition: its own CMAF track (``{name}/init.mp4``,
    ``{name}/seg_{msn}.m4s``) on the video's segment numbers, which every video
    rendition shares (an HLS audio group, a DASH audio adaptation set)."""

    name: str
    bandwidth: int
    codecs: str
    sampling_rate: int
    channels: int
    playlist: str


@dataclass(frozen=True)
class LiveEvent:
    """What a `vcdn live` pipeline PUTs as ``/v/{title}/live.json``: the event's shape,
    so the origin can build playlists from the segments it keeps. ``ended`` (sent once
    the input ends) turns the title into VOD. Every pipeline of an event sends the same."""

    segment_seconds: float
    window: float
    renditions: list[Rendition]
    ended: bool = False
    #: Low-latency HLS: the part target in seconds (0: segments only).
    part_seconds: float = 0.0
    #: The separate audio rendition; None when the event has no sound (or comes from a
    #: pipeline that muxed it into every rendition).
    audio: LiveAudio | None = None


# --- appliances ---


@dataclass(frozen=True)
class Registration:
    """`POST /api/v1/appliances`: who an appliance is and where it serves."""

    id: str
    site: str
    public_url: str
    capacity_bytes: int
    asn: int = 0
    lat: float = 0.0
    lon: float = 0.0
    prefixes: list[str] = field(default_factory=list)
    #: Where players reach it over HTTPS ('' when it serves no TLS); steering hands
    #: this out instead of `public_url` when set. Peers keep filling from `public_url`.
    tls_url: str = ""


@dataclass(frozen=True)
class Enrollment:
    """`POST /api/v1/enrollments`: an operator admits an appliance.

    The site and the client prefixes it may serve are the operator's to set; the
    appliance's own registration must stay inside them.
    """

    id: str
    site: str
    prefixes: list[str] = field(default_factory=list)
    label: str = ""


@dataclass(frozen=True)
class EnrollmentView:
    """An enrolment as the API shows it (never its token)."""

    id: str
    site: str
    prefixes: list[str]
    label: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class Load:
    requests_per_s: float = 0.0
    bytes_per_s: float = 0.0
    connections: int = 0


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Heartbeat:
    """`PUT /api/v1/appliances/{id}/heartbeat`."""

    state: HealthState
    load: Load = field(default_factory=Load)
    free_bytes: int = 0
    used_bytes: int = 0
    objects: int = 0
    bytes_served: int = 0
    hit_ratio: float = 0.0
    title_requests: dict[str, int] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=dict)


@dataclass(frozen=True)
class ApplianceView:
    """One item of `GET /api/v1/appliances`: registration plus computed state."""

    id: str
    site: str
    public_url: str
    capacity_bytes: int
    asn: int
    lat: float
    lon: float
    prefixes: list[str]
    state: ApplianceState
    last_heartbeat: float | None = None
    load: Load = field(default_factory=Load)
    free_bytes: int = 0
    used_bytes: int = 0
    bytes_served: int = 0
    hit_ratio: float = 0.0
    tls_url: str = ""


# --- fill manifests ---


@dataclass(frozen=True)
class FillTitle:
    title: str
    score: float
    bytes: int
    files: list[FileEntry]
    peers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FillManifest:
    """`GET /api/v1/appliances/{id}/fill-manifest`: what to hold, most popular first."""

    appliance: str
    generated_at: float
    capacity_bytes: int
    titles: list[FillTitle]
    version: int = 1
