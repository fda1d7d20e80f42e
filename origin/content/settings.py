"""Settings of `vcdn origin`, one frozen dataclass built by `vcdn.settings.load_settings`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vcdn.settings import Bytes


@dataclass(frozen=True)
class OriginSettings:
    root: Path
    host: str = "127.0.0.1"
    port: int = 8080
    #: Request line and header field limits; longer ones are refused with 400.
    max_line_size: Bytes = 8190
    max_field_size: Bytes = 8190
    max_headers: int = 100
    #: Idle keep-alive connections, and clients still sending their request head, are
    #: closed after this many seconds (see `vcdn.httpserve.server`).
    keepalive_timeout: float = 20.0
    #: Open connections beyond this are refused (accepted then closed at once).
    max_connections: int = 10000
    #: RAM for hot small files served without routing (0 disables); files up to this size.
    hot_capacity: Bytes = 64 * 1024 * 1024
    hot_object_max: Bytes = 256 * 1024
    #: sha256 (hex) of each bearer token that may PUT live events (the packager's); empty
    #: refuses every PUT. A hash, so the settings file holds no usable secret.
    ingest_token_sha256: tuple[str, ...] = ()
    #: Largest upload a live pipeline may PUT (a segment at the top rung is a few MB).
    max_ingest_bytes: Bytes = 64 * 1024 * 1024
    #: Seconds a segment stays on disk after it left the live window (players holding an
    #: older playlist may still fetch it).
    live_grace: float = 30.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {self.port}")
