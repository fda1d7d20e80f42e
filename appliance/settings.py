"""Appliance settings: one frozen dataclass built from TOML, `VCDN_*` environment and flags.

Secrets (the control-plane token, the operator token and the URL signing keys, which also
authenticate peer requests between appliances) come from the settings file, a ``*_file``
next to it (systemd credentials) or the environment, never from the command line, where
every local user could read them in ``ps``. `load` resolves the files and checks every
value, so a bad setting stops start-up with a `ConfigError` naming the key.

The embedded edge engine's tuning is the `[edge]` table (`edge.settings.EdgeTuning`, the
same fields, defaults, bounds and messages as `vcdn edge`); the engine's other settings
follow from the appliance's own (`appliance.daemon.edge_settings`), so `[edge]` refuses
them by name rather than letting two keys disagree about one thing.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from appliance.bgp import BgpPeer
from appliance.schedule import FillWindow
from edge.settings import EdgeSettings, EdgeTuning
from vcdn.errors import ConfigError
from vcdn.httplimits import HttpLimits
from vcdn.settings import Bytes, load_settings, read_toml
from vcdn.tls import TlsOptions
from vcdn.tokens import KeyRing, parse_keys

_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MIN_SECRET_CHARS: Final = 16
# Settings that are secrets: never accepted as command-line flags.
SECRETS: Final = frozenset({"control_token", "operator_token", "signing_keys"})
# Engine settings the appliance sets from its own: the engine's name → the appliance's
# setting (the rest of EdgeSettings outside EdgeTuning have the same name at the top level,
# or are fixed by the appliance: OWN_FIXED).
OWN_RENAMED: Final = {"upstream": "origin_url", "capacity": "cache_capacity",
                      "read_timeout": "upstream_timeout"}
OWN_FIXED: Final = {"mode": "video URLs only", "workers": "one, which the control loops share",
                    "live": "off", "config_file": "the appliance watches its own file",
                    "query_policy": "video URLs never key on their query"}


@dataclass(frozen=True)
class ApplianceSettings(HttpLimits, TlsOptions):
    """Everything one appliance needs; see packaging/appliance.toml for each key. The
    listener limits (`vcdn.httplimits.HttpLimits`) hold for the public and admin ports;
    the TLS settings (`vcdn.tls.TlsOptions`: certificates, `ca_bundle`) for the video
    listener's HTTPS port (`tls_port`), the admin port when `admin_tls` is on, and for
    every client the appliance runs."""

    id: str
    site: str
    public_url: str
    cache_dir: Path
    cache_capacity: Bytes
    control_url: str
    origin_url: str
    asn: int = 0
    lat: float = 0.0
    lon: float = 0.0
    prefixes: tuple[str, ...] = ()
    host: str = "0.0.0.0"
    port: int = 8080
    # Free space the fill must leave on the cache disk; below it the fill pauses.
    cache_free_floor: Bytes = 256 * 1024 * 1024
    control_token: str = ""
    control_token_file: Path | None = None
    auth: Literal["tokens", "none"] = "tokens"
    signing_keys: str = ""
    signing_keys_file: Path | None = None
    # Where players reach the control plane's key service: key URIs of encrypted titles are
    # redirected there (edge.keyredirect). Empty: the first control_url.
    key_service: str = ""
    # Appliances of the same site asked first on a client miss (the fill uses the peers the
    # fill manifest lists).
    peers: tuple[str, ...] = ()
    fill_window: str = "02:00-14:00"
    fill_bandwidth: Bytes = 0  # bytes per second for the whole fill; 0 means no cap
    fill_concurrency: int = 4
    fill_interval: float = 60.0  # seconds between fill-manifest fetches
    heartbeat_interval: float = 10.0
    upstream_timeout: float = 10.0
    admin_host: str = "127.0.0.1"
    admin_port: int = 8081
    operator_token: str = ""
    operator_token_file: Path | None = None
    drain_timeout: float = 30.0
    # BGP with the ISP's router (ExaBGP): learned prefixes join `prefixes` in registration.
    bgp_neighbor: str = ""  # the router's address; empty: no BGP session
    bgp_peer_as: int = 0
    bgp_local_as: int = 0  # 0: the appliance's `asn`
    bgp_local_address: str = ""
    bgp_router_id: str = ""  # empty: the local address (IPv4)
    bgp_port: int = 179
    # The HTTPS URL players reach this appliance at, registered beside `public_url`;
    # steering hands it out instead when set. Empty with `tls_port` (the video listener's
    # HTTPS port): https://{public_url's host}:{tls_port}.
    tls_url: str = ""
    # Serve the admin API over HTTPS with the appliance's certificates.
    admin_tls: bool = False
    # ACME (RFC 8555): certificates for `acme_domains` from `acme_directory`, answered
    # over HTTP-01 on the public port, renewed at `acme_renew_at` of their lifetime.
    acme_directory: str = ""
    acme_domains: tuple[str, ...] = ()
    acme_email: str = ""
    acme_renew_at: float = 2 / 3
    acme_check_interval: float = 3600.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The edge engine's tuning ([edge] ram_cache = "256MiB", VCDN_EDGE_RAM_CACHE, ...).
    edge: EdgeTuning = dataclasses.field(default_factory=EdgeTuning)

    @property
    def window(self) -> FillWindow:
        return FillWindow.parse(self.fill_window)

    @property
    def bgp(self) -> BgpPeer | None:
        if not self.bgp_neighbor:
            return None
        return BgpPeer(
            neighbor=self.bgp_neighbor,
            peer_as=self.bgp_peer_as,
            local_as=self.bgp_local_as or self.asn,
            local_address=self.bgp_local_address,
            router_id=self.bgp_router_id or self.bgp_local_address,
            port=self.bgp_port,
        )

    @property
    def keys(self) -> KeyRing:
        return parse_keys(self.signing_keys) if self.signing_keys else KeyRing()


def _read_secret(path: Path, key: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"Setting '{key}' names '{path}', which cannot be read: {exc.strerror}."
        ) from None


def _check_url(value: str, key: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"Setting '{key}' must be an http:// or https:// URL, got {value!r}.")


def _check_port(value: int, key: str, allow_zero: bool = True) -> None:
    if not (0 if allow_zero else 1) <= value <= 65535:
        raise ConfigError(f"Setting '{key}' must be a TCP port number (0-65535), got {value}.")


def check(s: ApplianceSettings) -> ApplianceSettings:
    """Validate values that types alone cannot; raise ConfigError naming the key."""
    for key in ("id", "site"):
        if not _ID_RE.match(getattr(s, key)):
            raise ConfigError(
                f"Setting '{key}' must be 1-64 characters of A-Z a-z 0-9 . _ -, "
                f"got {getattr(s, key)!r}."
            )
    for key in ("public_url", "origin_url"):
        _check_url(getattr(s, key), key)
    if s.tls_url and (urlsplit(s.tls_url).scheme != "https" or not urlsplit(s.tls_url).hostname):
        raise ConfigError(f"Setting 'tls_url' must be an https:// URL, got {s.tls_url!r}.")
    s.cert_pairs()  # a lone cert or key, or a bad 'tls_certs' item
    if s.tls_port is not None:
        _check_port(s.tls_port, "tls_port")
        if s.tls_cert is None:
            raise ConfigError(
                "Setting 'tls_port' needs 'tls_cert'/'tls_key' (the files, or where "
                "'acme_directory' writes them).")
        if s.tls_port != 0 and s.tls_port in (s.port, s.admin_port):
            raise ConfigError(
                f"Setting 'tls_port' ({s.tls_port}) must differ from 'port' and 'admin_port'.")
    if s.admin_tls and s.tls_cert is None and not s.acme_directory:
        raise ConfigError("Setting 'admin_tls' needs 'tls_cert'/'tls_key' or 'acme_directory'.")
    if s.acme_directory:
        _check_url(s.acme_directory, "acme_directory")
        if not s.acme_domains:
            raise ConfigError("Setting 'acme_directory' needs the names in 'acme_domains'.")
        if s.tls_cert is None:
            raise ConfigError(
                "Setting 'acme_directory' needs 'tls_cert'/'tls_key': the files the issued "
                "certificate and its key are written to."
            )
        if not 0.1 <= s.acme_renew_at <= 0.95:
            raise ConfigError("Setting 'acme_renew_at' must be between 0.1 and 0.95.")
    for url in s.control_url.split(","):  # control replicas, comma-separated
        _check_url(url.strip(), "control_url")
    _check_port(s.port, "port")
    _check_port(s.admin_port, "admin_port")
    if not -90 <= s.lat <= 90:
        raise ConfigError(f"Setting 'lat' must be between -90 and 90, got {s.lat}.")
    if not -180 <= s.lon <= 180:
        raise ConfigError(f"Setting 'lon' must be between -180 and 180, got {s.lon}.")
    if not 0 <= s.asn < 2**32:
        raise ConfigError(f"Setting 'asn' must be a 32-bit AS number, got {s.asn}.")
    for prefix in s.prefixes:
        try:
            ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            raise ConfigError(
                f"Setting 'prefixes' holds {prefix!r}, which is not an IP prefix."
            ) from None
    if s.cache_capacity <= 0:
        raise ConfigError("Setting 'cache_capacity' must be a positive size such as 500GiB.")
    if s.fill_concurrency < 1:
        raise ConfigError(f"Setting 'fill_concurrency' must be >= 1, not {s.fill_concurrency}.")
    for key in ("heartbeat_interval", "fill_interval", "upstream_timeout", "drain_timeout"):
        if not getattr(s, key) > 0:
            raise ConfigError(f"Setting '{key}' must be a positive number of seconds.")
    try:
        s.window  # noqa: B018 - parsing is the check
    except ConfigError as exc:
        raise ConfigError(f"Setting 'fill_window': {exc}") from None
    if len(s.control_token) < MIN_SECRET_CHARS:
        raise ConfigError(
            "Setting 'control_token' is missing or shorter than 16 characters: set it in the "
            "settings file, in 'control_token_file', or as VCDN_CONTROL_TOKEN."
        )
    if s.operator_token and len(s.operator_token) < MIN_SECRET_CHARS:
        raise ConfigError("Setting 'operator_token' must be at least 16 characters long.")
    for peer in s.peers:
        _check_url(peer, "peers")
    if s.auth == "tokens":
        if not s.signing_keys:
            raise ConfigError(
                "Setting 'signing_keys' is required when auth = \"tokens\": set it in the "
                "settings file, in 'signing_keys_file', or as VCDN_SIGNING_KEYS."
            )
        try:
            s.keys  # noqa: B018
        except ConfigError as exc:
            raise ConfigError(f"Setting 'signing_keys': {exc}") from None
    _check_bgp(s)
    return s


def _check_bgp(s: ApplianceSettings) -> None:
    if not s.bgp_neighbor:
        return
    for key in ("bgp_neighbor", "bgp_local_address"):
        try:
            ipaddress.ip_address(getattr(s, key))
        except ValueError:
            raise ConfigError(
                f"Setting '{key}' must be an IP address, got {getattr(s, key)!r}."
            ) from None
    try:
        if ipaddress.ip_address(s.bgp_router_id or s.bgp_local_address).version != 4:
            raise ValueError
    except ValueError:
        raise ConfigError(
            "Setting 'bgp_router_id' must be an IPv4 address (BGP identifiers are 32 bits, "
            "RFC 4271 §4.2); set it when the local address is IPv6."
        ) from None
    for key, value in (("bgp_peer_as", s.bgp_peer_as), ("bgp_local_as", s.bgp_local_as or s.asn)):
        if not 0 < value < 2**32:
            raise ConfigError(f"Setting '{key}' must be an AS number (1-4294967295) for BGP.")
    _check_port(s.bgp_port, "bgp_port", allow_zero=False)


def load(
    path: Path | str | None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> ApplianceSettings:
    """Settings from `path` + environment + `overrides` (flags), secrets resolved, checked."""
    bad = SECRETS.intersection(k for k, v in (overrides or {}).items() if v is not None)
    if bad:
        raise ConfigError(
            f"Setting '{sorted(bad)[0]}' is a secret and cannot be given on the command line; "
            "use the settings file, a *_file setting or the environment."
        )
    if path is not None:
        _refuse_owned(read_toml(Path(path)), path)
    s = load_settings(ApplianceSettings, path, overrides=overrides, env=env)
    base = Path(path).parent if path is not None else Path(".")
    resolved: dict[str, Any] = {}
    for key in ("control_token", "operator_token", "signing_keys"):
        file = getattr(s, f"{key}_file")
        if file is not None and not getattr(s, key):
            text = _read_secret(file if file.is_absolute() else base / file, f"{key}_file")
            if key == "signing_keys":  # one key per line, as edge and steering read it
                text = ",".join(line.strip() for line in text.splitlines())
            resolved[key] = text
    for key in ("tls_cert", "tls_key", "ca_bundle", "tls_client_cert", "tls_client_key"):
        file = getattr(s, key)
        if file is not None and not file.is_absolute():
            resolved[key] = base / file
    if not s.tls_url and s.tls_port:
        resolved["tls_url"] = derived_tls_url(s.public_url, s.tls_port)
    if resolved:
        s = dataclasses.replace(s, **resolved)
    return check(s)


def _refuse_owned(keys: Mapping[str, Any], path: Path | str) -> None:
    """An `[edge]` key that the appliance sets itself stops start-up saying which setting
    to change instead (the generic loader would only call it unknown)."""
    tunable = {f.name for f in dataclasses.fields(EdgeTuning)}
    owned = {f.name for f in dataclasses.fields(EdgeSettings)} - tunable
    for key in keys:
        name = key.removeprefix("edge_")
        if key == name or name not in owned:
            continue
        if name in OWN_FIXED:
            how = f"the appliance fixes it ({OWN_FIXED[name]})"
        else:
            how = f"set the appliance's '{OWN_RENAMED.get(name, name)}' instead"
        raise ConfigError(
            f"Setting '{key}' in '{path}': the appliance sets the engine's '{name}' itself, "
            f"so [edge] cannot change it; {how}. [edge] takes: {', '.join(sorted(tunable))}."
        )


def derived_tls_url(public_url: str, tls_port: int) -> str:
    """The video listener's HTTPS URL: `public_url`'s host on `tls_port`."""
    host = urlsplit(public_url).hostname or ""
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{tls_port}"
