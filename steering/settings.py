"""The one settings dataclass of `vcdn steering`, filled by `vcdn.settings.load_settings`.

Secrets (the control token, the URL signing keys) come from the settings file or the
environment (`VCDN_CONTROL_TOKEN`, `VCDN_SIGNING_KEYS`), never from the command line,
because a command line is visible to every user of the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address, ip_network
from pathlib import Path

from vcdn.errors import ConfigError
from vcdn.httplimits import HttpLimits
from vcdn.tls import TlsOptions


@dataclass(frozen=True)
class SteeringSettings(HttpLimits, TlsOptions):
    """The HTTP API's listener limits (`vcdn.httplimits.HttpLimits`) are inherited."""

    control: str
    zone: str
    signing_keys: str = ""
    # The same text in a file; re-read on SIGHUP and when it changes.
    signing_keys_file: Path | None = None
    control_token: str = ""
    host: str = "127.0.0.1"
    dns_port: int = 5300
    http_port: int = 8300
    geoip_city: Path | None = None
    geoip_asn: Path | None = None
    origin_url: str = ""
    default_site: str = ""
    # Service names inside the zone whose A/AAAA answers are steered (`edge.{zone}`).
    service_names: tuple[str, ...] = ("edge",)
    # Addresses of ns1.{zone}, served as its A/AAAA (glue for the NS record).
    ns_addresses: tuple[str, ...] = ()
    ttl: int = 20
    negative_ttl: int = 30
    answers: int = 2
    poll_interval: float = 2.0
    # EDNS0 payload size we advertise; 1232 avoids IP fragmentation (DNS flag day 2020).
    udp_payload: int = 1232
    # Peers (CIDRs) whose X-Forwarded-For is believed by the playback API.
    trusted_proxies: tuple[str, ...] = ()
    # How many of a title's top-ranked appliances in a site share its requests.
    dispersion: int = 1
    token_ttl: int = 6 * 3600
    # An appliance at this fraction of its serving capacity starts shedding clients.
    saturation: float = 0.8
    appliance_max_bytes_per_s: float = 1.25e9
    appliance_max_requests_per_s: float = 20000.0
    title_cache_seconds: float = 60.0
    # DNS over TCP (RFC 7766): open connections in all, per client address, and the idle
    # time after which one is closed (§6.2.3 suggests seconds, not minutes).
    dns_tcp_max_connections: int = 256
    dns_tcp_per_client: int = 16
    dns_tcp_idle_timeout: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dns_tcp_max_connections < 1 or self.dns_tcp_per_client < 1:
            raise ConfigError(
                "Settings 'dns_tcp_max_connections' and 'dns_tcp_per_client' must be >= 1."
            )
        if self.dns_tcp_idle_timeout <= 0:
            raise ConfigError("Setting 'dns_tcp_idle_timeout' must be a positive number.")
        if not self.zone.strip(".") or " " in self.zone:
            raise ConfigError(
                f"Setting 'zone' must be a DNS name such as cdn.example., got {self.zone!r}."
            )
        for url in self.control.split(","):  # control replicas, comma-separated
            if not url.strip().startswith(("http://", "https://")):
                raise ConfigError(f"Setting 'control' must be http(s) URLs, got {url!r}.")
        if not 1 <= self.answers <= 64:
            raise ConfigError("Setting 'answers' must be between 1 and 64.")
        if not 0 <= self.dns_port <= 65535 or not 0 <= self.http_port <= 65535:
            raise ConfigError("Settings 'dns_port' and 'http_port' must be between 0 and 65535.")
        if self.poll_interval <= 0 or self.ttl < 0 or self.dispersion < 1:
            raise ConfigError("Settings 'poll_interval' > 0, 'ttl' >= 0 and 'dispersion' >= 1.")
        if not 512 <= self.udp_payload <= 4096:
            raise ConfigError("Setting 'udp_payload' must be between 512 and 4096.")
        if not 0 < self.saturation <= 1:
            raise ConfigError("Setting 'saturation' must be in (0, 1].")
        for name, items, parse in (("trusted_proxies", self.trusted_proxies, ip_network),
                                   ("ns_addresses", self.ns_addresses, ip_address)):
            for item in items:
                try:
                    parse(item)
                except ValueError:
                    raise ConfigError(
                        f"Setting '{name}' has {item!r}, which is not an IP address or network."
                    ) from None
