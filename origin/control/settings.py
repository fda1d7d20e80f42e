"""Settings of `vcdn control`: one frozen dataclass, from TOML + ``VCDN_CONTROL_*`` + flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from origin.control.store import DEFAULT_DB
from vcdn.httplimits import HttpLimits
from vcdn.keyreload import read_keys
from vcdn.settings import Bytes
from vcdn.tls import TlsOptions
from vcdn.tokens import KeyRing

ENV_PREFIX: Final = "VCDN_CONTROL_"
DEFAULT_PORT: Final = 8090
MAX_FLUSH_DELAY: Final = 5.0
MIN_BODY: Final = 1024


@dataclass(frozen=True)
class ControlSettings(HttpLimits, TlsOptions):
    """Listener limits (`vcdn.httplimits.HttpLimits`) are inherited; `max_body` is the
    smaller limit of the JSON routes."""

    db: str = DEFAULT_DB
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    # Bootstrap tokens for embedded and demo use, "role:token,role@appliance-id:token";
    # they work without a database entry (VCDN_CONTROL_TOKENS; never on the command line).
    tokens: str = ""
    # The URL-signing keys steering and appliances share ("kid:secret,..."): the key
    # service checks players' playback tokens with them (VCDN_CONTROL_SIGNING_KEYS or the
    # settings file, or one key per line in signing_keys_file). Without them the key
    # service refuses every player.
    signing_keys: str = ""
    signing_keys_file: Path | None = None
    heartbeat_interval: float = 10.0
    stale_after_beats: float = 3.0
    down_after_beats: float = 30.0
    popularity_half_life: float = 12 * 3600.0
    heartbeat_retention: float = 24 * 3600.0
    # Heartbeats are stored in batches at most this many seconds after they arrive (reads
    # flush first, so nobody sees a stale state); 0 writes each beat before answering it.
    heartbeat_flush_delay: float = 0.1
    # The history keeps one beat per appliance per this many seconds (0: every beat).
    heartbeat_history_every: float = 60.0
    max_body: Bytes = 8 * 1024 * 1024
    # Client prefixes wider than these (and default routes) are refused (docs/security.md).
    max_prefix_v4: int = 8
    max_prefix_v6: int = 19
    # A heartbeat: its body, its per-title counts (catalog titles only), what history keeps.
    heartbeat_max_body: Bytes = 1024 * 1024
    heartbeat_max_titles: int = 10_000
    heartbeat_max_count: int = 10_000_000
    history_detail_chars: int = 256
    history_rows: int = 2000
    # The planning job makes the next fill-plan epoch this often (0: plans are made only
    # when an appliance asks and its stored plan is out of date).
    plan_interval: float = 60.0
    # Seconds between attempts to take (or check) the periodic jobs' lock: bounds how long
    # the jobs wait after the instance running them dies.
    lease_retry: float = 2.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    def __post_init__(self) -> None:
        super().__post_init__()
        # load_settings turns a ValueError here into a ConfigError naming the problem.
        if self.heartbeat_interval <= 0:
            raise ValueError("'heartbeat_interval' must be positive")
        if not 0 < self.stale_after_beats <= self.down_after_beats:
            raise ValueError("need 0 < 'stale_after_beats' <= 'down_after_beats'")
        if self.popularity_half_life <= 0:
            raise ValueError("'popularity_half_life' must be positive")
        if self.heartbeat_retention < 0:
            raise ValueError("'heartbeat_retention' must not be negative")
        if not 0 <= self.heartbeat_flush_delay <= MAX_FLUSH_DELAY:
            raise ValueError(f"'heartbeat_flush_delay' must be between 0 and {MAX_FLUSH_DELAY} s")
        if self.heartbeat_history_every < 0:
            raise ValueError("'heartbeat_history_every' must not be negative")
        if self.plan_interval < 0:
            raise ValueError("'plan_interval' must not be negative")
        if not 0 < self.lease_retry <= 60:
            raise ValueError("'lease_retry' must be between 0 and 60 s")
        if not 0 <= self.port <= 65535:
            raise ValueError("'port' must be between 0 and 65535")
        if not 1 <= self.max_prefix_v4 <= 32 or not 1 <= self.max_prefix_v6 <= 128:
            raise ValueError("need 1 <= 'max_prefix_v4' <= 32 and 1 <= 'max_prefix_v6' <= 128")
        if self.heartbeat_max_body < MIN_BODY:
            raise ValueError(f"'heartbeat_max_body' must be at least {MIN_BODY} bytes")
        if min(self.heartbeat_max_titles, self.heartbeat_max_count, self.history_rows) < 1:
            raise ValueError(
                "'heartbeat_max_titles', 'heartbeat_max_count' and 'history_rows' must be positive"
            )
        if self.history_detail_chars < 0:
            raise ValueError("'history_detail_chars' must not be negative")
        if self.max_body < MIN_BODY:
            raise ValueError(f"'max_body' must be at least {MIN_BODY} bytes")
        self.keys()  # a malformed key list is refused at start, naming the expected form

    def keys(self) -> KeyRing:
        return read_keys(self.signing_keys, self.signing_keys_file)
