"""Settings of `vcdn origin`, one frozen dataclass built by `vcdn.settings.load_settings`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from vcdn.httplimits import HttpLimits
from vcdn.settings import Bytes
from vcdn.tls import TlsOptions


@dataclass(frozen=True)
class OriginSettings(HttpLimits, TlsOptions):
    """Listener limits (`vcdn.httplimits.HttpLimits`) and TLS (`vcdn.tls.TlsOptions`) are
    inherited."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 8080
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

    def http_limits(self) -> HttpLimits:
        """The listener must let an ingest PUT through; its route applies its own limit."""
        limits = super().http_limits()
        return replace(limits, max_body_bytes=max(limits.max_body_bytes, self.max_ingest_bytes))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {self.port}")
