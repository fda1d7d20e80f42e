"""Settings of `vcdn origin`, one frozen dataclass built by `vcdn.settings.load_settings`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vcdn.httplimits import HttpLimits
from vcdn.settings import Bytes


@dataclass(frozen=True)
class OriginSettings(HttpLimits):
    """Listener limits (`vcdn.httplimits.HttpLimits`) are inherited."""

    root: Path
    host: str = "127.0.0.1"
    port: int = 8080
    #: RAM for hot small files served without routing (0 disables); files up to this size.
    hot_capacity: Bytes = 64 * 1024 * 1024
    hot_object_max: Bytes = 256 * 1024
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, not {self.port}")
