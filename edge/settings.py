"""The edge's one settings dataclass, built by `vcdn.settings.load_settings`.

The appliance daemon builds the same `EdgeSettings` from its own file, so every field has
a default except where the cache lives and what it fills from. The cache engine's tuning
(`EdgeTuning`) is a class of its own because the appliance takes exactly those fields, as
its `[edge]` table, while it decides the rest (where the cache is, whom it fills from,
where it listens, auth and keys) itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from vcdn.errors import ConfigError
from vcdn.httplimits import HttpLimits
from vcdn.keyreload import read_keys
from vcdn.settings import Bound, Bytes, NonNegative, Positive, check_bounds
from vcdn.tls import TlsOptions
from vcdn.tokens import KeyRing


@dataclass(frozen=True, kw_only=True)
class EdgeTuning:
    """How the cache engine behaves, whoever runs it: `vcdn edge` (top-level keys) or an
    appliance (its `[edge]` table). Every field has a default and a bound, checked the same
    way from either file. Proxy-mode settings (`query_policy`) are not here: an appliance
    serves video URLs only, where they would do nothing."""

    #: ``popularity`` (default): manifest-pinned last, S3-FIFO admission for the rest;
    #: ``lru``, ``lfu``, ``s3fifo``: the classic policies (edge.policies).
    eviction: Literal["popularity", "lru", "lfu", "s3fifo"] = "popularity"
    #: Seconds to connect to an upstream (peers get at most 0.5 s of it).
    connect_timeout: Positive = 2.0
    #: Extra attempts of a failed idempotent origin request (0: none).
    retries: Annotated[int, Bound(0)] = 2
    #: Consecutive failures that open an upstream's circuit breaker, and the seconds it
    #: stays open before one trial request.
    breaker_threshold: Annotated[int, Bound(1)] = 5
    breaker_reset: Positive = 5.0
    #: Hot small objects (playlists, init segments) held in RAM, up to this many bytes
    #: (0: none; hits read the page cache).
    ram_cache: Bytes = 64 * 1024**2
    ram_object_max: Bytes = 256 * 1024
    #: A range starting this far past what a fill has written is fetched upstream directly.
    far_ahead: Bytes = 4 * 1024**2
    #: A range request that misses is filled whole only for catalog titles (signed URLs,
    #: titles of the fill manifest) or objects up to this size; others pass through.
    range_fill_max: Bytes = 4 * 1024**2
    #: Error answers the upstream lets a cache keep (RFC 9111 §3) are kept at most this
    #: long, so repeats of one failing URL do not each go upstream (0: never kept).
    negative_ttl: NonNegative = 5.0

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class EdgeSettings(HttpLimits, TlsOptions, EdgeTuning):
    """Listener limits (`vcdn.httplimits.HttpLimits`) are inherited; the fast path keeps
    them too. TLS (`vcdn.tls.TlsOptions`): with `tls_cert`/`tls_key` the video listener
    speaks HTTPS on `port`, or on `tls_port` beside plain HTTP on `port`; hits take the
    same hit protocol on both (`vcdn.httpserve.hitproto`). The engine's tuning
    (`EdgeTuning`) is inherited as well."""

    cache_dir: Path
    #: Parent edge or origin base URL (``http://origin:8000``).
    upstream: str
    capacity: Bytes = 10 * 1024**3
    #: Other appliances of the site, asked first and only for what they already hold.
    peers: tuple[str, ...] = ()
    #: ``tokens``: /s/{token}/{title}/{path} only. ``none``: also unsigned (labs, parents).
    auth: Literal["tokens", "none"] = "tokens"
    #: ``appliance``: video URLs, GET/HEAD/OPTIONS only. ``proxy``: any path maps 1:1 onto
    #: the upstream, other methods are forwarded (a parent tier, a generic RFC 9111 cache).
    mode: Literal["appliance", "proxy"] = "appliance"
    #: ``"kid:secret,kid2:secret2"``; from VCDN_SIGNING_KEYS or the settings file only.
    signing_keys: str = ""
    #: The same text in a file (one key per line or comma-separated); re-read on SIGHUP
    #: and when it changes, like the settings file (docs/edge.md "Signing keys").
    signing_keys_file: Path | None = None
    #: The control plane's key service as players reach it (``https://control.example``):
    #: key URIs of encrypted titles (``/s/{token}/{title}/keys/...``) are redirected there
    #: (`edge.keyredirect`); empty, they are ordinary (missing) files.
    key_service: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    #: Worker processes sharing the port; 0 means one per CPU.
    workers: int = 0
    #: Seconds an upstream answer may pause (the appliance: its `upstream_timeout`).
    read_timeout: Positive = 10.0
    #: Proxy mode: ``keep`` makes the query part of the cache key (and of the upstream
    #: target); ``ignore`` drops it from both. Video URLs (appliance mode) always ignore it.
    query_policy: Literal["keep", "ignore"] = "keep"
    #: Playlists of live titles: the Cache-Control used for objects without upstream headers.
    live: bool = False
    log_level: str = "info"
    #: The settings file this was read from (set by `vcdn edge --config`), watched for
    #: key changes.
    config_file: Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bounds(self)  # the tuning's and read_timeout's (HttpLimits' does not chain)
        if self.capacity <= 0:
            raise ConfigError("Setting 'capacity' must be a positive byte size such as 10GiB.")
        if not self.upstream.startswith(("http://", "https://")):
            raise ConfigError(
                f"Setting 'upstream' must be an http:// or https:// URL, got {self.upstream!r}."
            )
        for peer in self.peers:
            if not peer.startswith(("http://", "https://")):
                raise ConfigError(f"Peer {peer!r} must be an http:// or https:// URL.")
        if self.auth == "tokens" and self.mode == "appliance":
            if not self.signing_keys.strip() and self.signing_keys_file is None:
                raise ConfigError(
                    "Setting 'signing_keys' is required with auth = tokens: set "
                    "VCDN_SIGNING_KEYS='kid:secret[,kid2:secret2]' or signing_keys in the "
                    "settings file (never on the command line), or run with --auth none."
                )
            self.keys()  # raises ConfigError naming the expected form
        if self.key_service and not self.key_service.startswith(("http://", "https://")):
            raise ConfigError(
                f"Setting 'key_service' must be an http:// or https:// URL, got "
                f"{self.key_service!r}."
            )
        if self.workers < 0:
            raise ConfigError("Setting 'workers' must be 0 (one per CPU) or more.")
        self.check_tls()

    def check_tls(self) -> None:
        """The TLS settings of the video listener make sense together (ConfigError)."""
        pairs = self.cert_pairs()  # a lone cert or key, or a bad 'tls_certs' item
        if self.tls_port is None:
            return
        if not pairs:
            raise ConfigError(
                "Setting 'tls_port' needs a certificate: set 'tls_cert' and 'tls_key' "
                "(--tls-cert, --tls-key).")
        if not 0 <= self.tls_port <= 65535:
            raise ConfigError(
                f"Setting 'tls_port' must be a TCP port number (0-65535), got {self.tls_port}.")
        if self.tls_port == self.port and self.port != 0:
            raise ConfigError(
                f"Settings 'port' and 'tls_port' are both {self.port}: HTTP and HTTPS need "
                "a port each.")

    def keys(self) -> KeyRing:
        return read_keys(self.signing_keys, self.signing_keys_file)
