"""The whole CDN on one machine: control, origin, steering and N appliances in two sites.

Every service is a real subprocess of ``python -m vcdn.cli`` on loopback, started in
dependency order and awaited on its ``/healthz``. `vcdn up` drives one `Cluster`; the
end-to-end tests drive another with short heartbeat intervals and kill and restart its
appliances. Secrets (bootstrap API tokens, URL signing keys) are made fresh per cluster and
reach the services through their environment or a 0600 settings file, never a command line;
each appliance is enrolled through the operator API and holds only its own bound token.

Appliance ``i`` listens on its own loopback address ``127.0.0.{10+i}`` so that the DNS
answers of steering name distinct boxes, as they would in a real ISP.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from onebox import acmeserver, localca
from onebox.acmeserver import AcmePorts
from onebox.localca import LocalCA
from onebox.procs import Proc, free_port, stop_all, vcdn_argv
from vcdn.control_client import ControlClient
from vcdn.errors import Conflict
from vcdn.schemas import Enrollment

SITES: Final = ("site-a", "site-b")
ZONE: Final = "cdn.example."
DEMO_NAME: Final = "edge." + ZONE
# Clients on loopback belong to site-a; site-b's prefix is a documentation range
# (RFC 5737 TEST-NET-1) so it serves only as a fallback here.
SITE_PREFIXES: Final[Mapping[str, tuple[str, ...]]] = {
    "site-a": ("127.0.0.0/8",),
    "site-b": ("192.0.2.0/24",),
}


#: The demo's live event: a test pattern with a running clock and a tone.
LIVE_SOURCE: Final = (
    "lavfi:testsrc2=size=640x360:rate=30[out0];sine=frequency=440:sample_rate=48000[out1]"
)


@dataclass(frozen=True)
class ClusterConfig:
    """How to lay the CDN out; the defaults are the demo's."""

    data: Path
    appliances: int = 3
    base_port: int = 0  # 0: pick free ports
    heartbeat_interval: float = 2.0
    stale_after_beats: float = 1.5
    # Heartbeat history for the dashboard's charts: every beat (0) on a demo-sized fleet.
    history_every: float = 0.0
    steering_poll: float = 0.5
    fill_interval: float = 5.0
    cache_capacity: str = "2GiB"
    token_ttl: int = 6 * 3600
    answers: int = 3
    # How long an appliance keeps serving after SIGTERM while steering moves clients away.
    drain_timeout: float = 1.0
    host: str = "127.0.0.1"
    appliance_hosts: tuple[str, ...] = ()  # default 127.0.0.{10+i}
    site_prefixes: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: SITE_PREFIXES)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # HTTPS for control, origin, steering's HTTP API and the appliances' admin API with
    # a local CA (data/tls/ca.pem) that every client here verifies against; the
    # appliances serve video over HTTPS on a second port (steering hands out those
    # https:// URLs) and keep plain HTTP on the first (peers' fill, ACME's HTTP-01).
    tls: bool = False
    # With `tls`: the appliances' certificates from an ACME server (pebble, on loopback)
    # over HTTP-01 instead of straight from the local CA; clients trust both
    # (data/tls/bundle.pem).
    acme: bool = False


@dataclass(frozen=True)
class Secrets:
    """The cluster's bootstrap credentials. Appliances get none of these: each is enrolled
    by the operator at start and receives a token bound to its own id."""

    operator: str
    packager: str
    steering: str
    signing_keys: str
    peer_key: str
    # The appliances' local admin API token (appliance-ctl): not the control's operator one.
    admin: str

    @classmethod
    def fresh(cls) -> Secrets:
        def tok() -> str:
            return "vcdn_" + secrets.token_urlsafe(24)

        return cls(tok(), tok(), tok(), "k1:" + secrets.token_urlsafe(24), tok(), tok())

    @property
    def bootstrap(self) -> str:
        return f"operator:{self.operator},packager:{self.packager},steering:{self.steering}"


@dataclass
class ApplianceSlot:
    """One appliance: where it lives, its process, and its settings file."""

    id: str
    site: str
    host: str
    port: int
    admin_port: int
    config: Path
    cache_dir: Path
    proc: Proc | None = None
    token: str = ""  # bound to this appliance by its enrolment
    tls_port: int = 0  # video over HTTPS (`vcdn up --tls`); 0: none
    # With TLS the admin API is HTTPS on the appliance's own address: the name its
    # certificate (from ACME, for that address) is for.
    admin_host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """The plain video listener: peers' fill and ACME's HTTP-01."""
        return f"http://{self.host}:{self.port}"

    @property
    def https_url(self) -> str:
        """The video listener over HTTPS (what steering hands out); "" without TLS."""
        return f"https://{self.host}:{self.tls_port}" if self.tls_port else ""

    @property
    def admin_url(self) -> str:
        scheme = "https" if self.tls_port else "http"
        return f"{scheme}://{self.admin_host}:{self.admin_port}"

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"


def common_free_port(hosts: list[str]) -> int:
    """A TCP port free on every one of `hosts` now."""
    while True:
        candidate = free_port(host=hosts[0])
        for host in hosts[1:]:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, candidate))
                except OSError:
                    break
        else:
            return candidate


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Our environment without any VCDN_* variable, so a user's shell cannot skew a service."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCDN_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Cluster:
    """Start, inspect, break and stop the services of one CDN."""

    def __init__(self, config: ClusterConfig, secrets_: Secrets | None = None) -> None:
        self.config = config
        self.data = config.data.resolve()
        self.logs = self.data / "logs"
        self.secrets = secrets_ or Secrets.fresh()
        ports = iter(range(config.base_port, config.base_port + 100)) if config.base_port else None

        def port(kind: int = socket.SOCK_STREAM) -> int:
            return next(ports) if ports is not None else free_port(kind)

        self.control_port = port()
        self.origin_port = port()
        self.steering_http_port = port()
        self.steering_dns_port = port(socket.SOCK_DGRAM)
        self.slots: list[ApplianceSlot] = []
        hosts = [config.appliance_hosts[i] if i < len(config.appliance_hosts)
                 else f"127.0.0.{10 + i}" for i in range(config.appliances)]
        self.acme_ports: AcmePorts | None = None
        if config.tls and config.acme:
            # Pebble validates HTTP-01 on one port: every appliance listens on it, each
            # on its own address.
            shared = port() if ports else common_free_port(hosts)
            self.acme_ports = AcmePorts(port(), port(), port(), shared)
        for i in range(config.appliances):
            site = SITES[0] if i < (config.appliances + 1) // 2 else SITES[1]
            host = hosts[i]
            aid = f"a{i + 1}"
            self.slots.append(
                ApplianceSlot(
                    id=aid, site=site, host=host,
                    port=(self.acme_ports.http01 if self.acme_ports is not None
                          else port() if ports else free_port(host=host)),
                    admin_port=(port() if ports or not config.tls else free_port(host=host)),
                    admin_host=host if config.tls else "127.0.0.1",
                    tls_port=(port() if ports else free_port(host=host)) if config.tls else 0,
                    config=self.data / "appliances" / f"{aid}.toml",
                    cache_dir=self.data / "appliances" / aid / "cache",
                )
            )
        self.control: Proc | None = None
        self.origin: Proc | None = None
        self.steering: Proc | None = None
        self.live: list[Proc] = []  # live pipelines started with `start_live`
        self.acme: Proc | None = None  # pebble, with `acme`
        self.ca: LocalCA | None = None
        if config.tls:
            names = ["localhost", config.host, *(s.host for s in self.slots)]
            self.ca = localca.ensure(self.data / "tls", list(dict.fromkeys(names)))

    @property
    def ca_bundle(self) -> Path | None:
        """What clients of this cluster trust besides the system store (None: no TLS):
        the local CA, plus pebble's root when the appliances' certificates come by ACME."""
        if self.ca is None:
            return None
        return self.data / "tls" / "bundle.pem" if self.acme_ports else self.ca.ca_cert

    @property
    def acme_root(self) -> Path:
        """Pebble's issuing root (written once pebble is up): what the appliances'
        certificates chain to."""
        return self.data / "tls" / "pebble-root.pem"

    @property
    def acme_directory(self) -> str:
        return acmeserver.directory_url(self.config.host, self.acme_ports) \
            if self.acme_ports else ""

    def _tls_args(self) -> list[str]:
        if self.ca is None:
            return []
        return ["--tls-cert", str(self.ca.cert), "--tls-key", str(self.ca.key)]

    @property
    def _scheme(self) -> str:
        return "https" if self.ca is not None else "http"

    # --- addresses ---

    @property
    def control_url(self) -> str:
        return f"{self._scheme}://{self.config.host}:{self.control_port}"

    @property
    def origin_url(self) -> str:
        """The origin for everyone: appliances' fill, live uploads, and players as the
        last resort steering offers (HTTPS only with --tls)."""
        return f"{self._scheme}://{self.config.host}:{self.origin_port}"

    @property
    def steering_url(self) -> str:
        return f"{self._scheme}://{self.config.host}:{self.steering_http_port}"

    def listeners(self) -> dict[str, str]:
        """Every HTTP listener of the cluster by name: with --tls all are https:// but
        the appliances' plain video ports (peers' fill, ACME's HTTP-01)."""
        out = {"control": self.control_url, "origin": self.origin_url,
               "steering": self.steering_url}
        for slot in self.slots:
            out[f"{slot.id}.admin"] = slot.admin_url
            out[f"{slot.id}.video"] = slot.url
            if slot.tls_port:
                out[f"{slot.id}.video_tls"] = slot.https_url
        return out

    @property
    def origin_root(self) -> Path:
        return self.data / "origin"

    def procs(self) -> list[Proc]:
        out = [self.acme, self.control, self.origin, self.steering] + [s.proc for s in self.slots]
        return [p for p in out if p is not None]

    def env(self, **extra: str) -> dict[str, str]:
        tls = {"VCDN_CA_BUNDLE": str(self.ca_bundle)} if self.ca_bundle is not None else {}
        return clean_env({**tls, **self.config.extra_env, **extra})

    # --- lifecycle ---

    async def start(self) -> None:
        """Every service, each awaited on /healthz.

        Control, origin and steering start in parallel (steering retries its poll); the
        appliances start once control answers, because each needs the token its
        enrolment gives it (issue 11: no appliance shares a credential with another).
        """
        self.build()
        if self.acme is not None:
            # First: every other service reads the bundle that holds pebble's root.
            assert self.ca is not None and self.acme_ports is not None
            await self.acme.start()
            await self.acme.wait_healthy()
            root = await acmeserver.fetch_root(self.ca, self.config.host, self.acme_ports)
            acmeserver.write_bundle(self.ca, root, self.acme_root,
                                    self.data / "tls" / "bundle.pem")
        core = [p for p in (self.control, self.origin, self.steering) if p is not None]
        for p in core:
            await p.start()
        assert self.control is not None
        await self.control.wait_healthy()
        await self.enroll_all()
        edges = [s.proc for s in self.slots if s.proc is not None]
        await self._start_all(edges)
        await asyncio.gather(*(p.wait_healthy() for p in core))

    async def enroll_all(self) -> None:
        """The operator enrols every appliance (site and approved client prefixes) and
        writes each its settings file with its own bound token. An appliance enrolled by
        an earlier run on the same state directory is re-provisioned as an operator
        would: decommissioned (its old registration names that run's ports, which only
        the operator may change, and its old token goes), its enrolment updated and its
        token rotated."""
        async with ControlClient(self.control_url, self.secrets.operator,
                                 ca_bundle=self.ca_bundle) as operator:
            for slot in self.slots:
                prefixes = list(self.config.site_prefixes.get(slot.site, ()))
                wanted = Enrollment(id=slot.id, site=slot.site, prefixes=prefixes,
                                    label="vcdn up")
                try:
                    _, slot.token = await operator.enroll(wanted)
                except Conflict:
                    await operator.decommission(slot.id)
                    await operator.update_enrollment(wanted)
                    slot.token = await operator.rotate_token(slot.id)
                self.write_appliance_config(slot)

    def build(self) -> None:
        """The service processes (not started) and the appliances' settings files."""
        for d in (self.logs, self.origin_root, self.data / "appliances"):
            d.mkdir(parents=True, exist_ok=True)
        if self.acme_ports is not None and self.ca is not None:
            self.acme = acmeserver.proc(self.data / "acme", self.ca, self.config.host,
                                        self.acme_ports, self.logs / "acme.log", self.env())
        self.control = Proc(
            "control",
            vcdn_argv(
                "control", "--db", f"sqlite:///{self.data / 'control.sqlite'}",
                "--host", self.config.host, "--port", str(self.control_port),
                *self._tls_args(),
            ),
            log_path=self.logs / "control.log",
            env=self.env(
                VCDN_CONTROL_TOKENS=self.secrets.bootstrap,
                VCDN_CONTROL_HEARTBEAT_INTERVAL=str(self.config.heartbeat_interval),
                VCDN_CONTROL_STALE_AFTER_BEATS=str(self.config.stale_after_beats),
                VCDN_CONTROL_HEARTBEAT_HISTORY_EVERY=str(self.config.history_every),
                # The key service checks players' tokens with the keys steering signs with.
                VCDN_CONTROL_SIGNING_KEYS=self.secrets.signing_keys,
            ),
            health_url=f"{self.control_url}/healthz",
            ca_bundle=self.ca_bundle,
        )
        self.origin = Proc(
            "origin",
            vcdn_argv(
                "origin", "--root", str(self.origin_root),
                "--host", self.config.host, "--port", str(self.origin_port),
                *self._tls_args(),
            ),
            log_path=self.logs / "origin.log",
            # Live pipelines publish with the packager's token; the origin holds its hash.
            env=self.env(VCDN_ORIGIN_INGEST_TOKEN_SHA256=hashlib.sha256(
                self.secrets.packager.encode()
            ).hexdigest()),
            health_url=f"{self.origin_url}/healthz",
            ca_bundle=self.ca_bundle,
        )
        self.steering = Proc(
            "steering",
            vcdn_argv(
                "steering", "--control", self.control_url, "--zone", ZONE,
                "--host", self.config.host,
                "--dns-port", str(self.steering_dns_port),
                "--http-port", str(self.steering_http_port),
                "--origin-url", self.origin_url,
                "--default-site", SITES[0],
                "--answers", str(self.config.answers),
                "--poll-interval", str(self.config.steering_poll),
                "--workers", "1",  # one box: one steering process, like every other part
                *self._tls_args(),
            ),
            log_path=self.logs / "steering.log",
            env=self.env(
                VCDN_CONTROL_TOKEN=self.secrets.steering,
                VCDN_SIGNING_KEYS=self.secrets.signing_keys,
                VCDN_TOKEN_TTL=str(self.config.token_ttl),
            ),
            health_url=f"{self.steering_url}/healthz",
            ca_bundle=self.ca_bundle,
        )
        for slot in self.slots:
            slot.proc = self.appliance_proc(slot)  # its settings file: after enrolment

    def live_proc(
        self, title: str, *, segment_seconds: float = 2.0, ladder: str = "360,240",
        source: str = LIVE_SOURCE, preset: str = "veryfast", low_latency: bool = False,
    ) -> Proc:
        """A `vcdn live` pipeline (not started) publishing `source` to this cluster's
        origin and registering the event with its control plane."""
        return Proc(
            f"live-{title}",
            vcdn_argv(
                "live", source, "--title", title, "--origin", self.origin_url,
                "--control", self.control_url, "--ladder", ladder,
                "--segment-seconds", str(segment_seconds), "--window", "60",
                "--preset", preset, "--progress-interval", "10",
                *(("--low-latency",) if low_latency else ()),
            ),
            log_path=self.logs / f"live-{title}.log",
            env=self.env(VCDN_INGEST_TOKEN=self.secrets.packager),
        )

    async def _start_all(self, procs: list[Proc]) -> None:
        for p in procs:
            await p.start()
        await asyncio.gather(*(p.wait_healthy() for p in procs))

    def write_appliance_config(self, slot: ApplianceSlot) -> None:
        """The appliance's settings file; it holds secrets, so only its owner may read it."""
        slot.cache_dir.mkdir(parents=True, exist_ok=True)
        prefixes = ", ".join(f'"{p}"' for p in self.config.site_prefixes.get(slot.site, ()))
        text = f"""# Written by `vcdn up`; holds secrets (mode 0600).
id = "{slot.id}"
site = "{slot.site}"
public_url = "{slot.url}"
cache_dir = "{slot.cache_dir}"
cache_capacity = "{self.config.cache_capacity}"
control_url = "{self.control_url}"
origin_url = "{self.origin_url}"
prefixes = [{prefixes}]
host = "{slot.host}"
port = {slot.port}
admin_host = "{slot.admin_host}"
admin_port = {slot.admin_port}
control_token = "{slot.token}"
operator_token = "{self.secrets.admin}"
signing_keys = "{self.secrets.signing_keys}"
fill_window = "00:00-00:00"
fill_interval = {self.config.fill_interval}
heartbeat_interval = {self.config.heartbeat_interval}
upstream_timeout = 5.0
drain_timeout = {self.config.drain_timeout}
"""
        if self.ca is not None and slot.tls_port and self.acme_ports is not None:
            # A fresh certificate from this run's pebble (its root is new every start).
            cert = self.appliance_cert(slot)
            key = cert.with_name("tls.key")
            for old in (cert, key):
                old.unlink(missing_ok=True)
            text += (f'tls_port = {slot.tls_port}\ntls_cert = "{cert}"\n'
                     f'tls_key = "{key}"\n'
                     f'acme_directory = "{self.acme_directory}"\n'
                     f'acme_domains = ["{slot.host}"]\nadmin_tls = true\n')
        elif self.ca is not None and slot.tls_port:
            text += (f'tls_port = {slot.tls_port}\ntls_cert = "{self.ca.cert}"\n'
                     f'tls_key = "{self.ca.key}"\nadmin_tls = true\n')
        slot.config.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(slot.config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)

    def appliance_cert(self, slot: ApplianceSlot) -> Path:
        """The chain the appliance's HTTPS listener serves: its own from ACME, else the
        local CA's."""
        if self.acme_ports is None and self.ca is not None:
            return self.ca.cert
        return slot.cache_dir.parent / "tls" / "tls.crt"

    def appliance_proc(self, slot: ApplianceSlot) -> Proc:
        return Proc(
            slot.id,
            vcdn_argv("appliance", "--config", str(slot.config)),
            log_path=self.logs / f"{slot.id}.log",
            env=self.env(),
            # With TLS: healthy once the admin API answers over HTTPS (it starts after
            # the certificate is there, with the HTTPS video listener).
            health_url=f"{slot.admin_url}/healthz" if slot.tls_port else f"{slot.url}/healthz",
            ca_bundle=self.ca_bundle,
        )

    async def restart_appliance(self, slot: ApplianceSlot) -> None:
        """Start a stopped or killed appliance again on the same ports and cache."""
        if slot.proc is not None:
            await slot.proc.stop(1.0)
        slot.proc = self.appliance_proc(slot)
        await slot.proc.start()
        await slot.proc.wait_healthy()

    async def start_live(self, title: str, **kw: Any) -> Proc:
        """Start a live pipeline (`live_proc`); stopped with the cluster."""
        proc = self.live_proc(title, **kw)
        await proc.start()
        self.live.append(proc)
        return proc

    async def stop(self) -> None:
        """Live pipelines, appliances and steering first (they talk to control and the
        origin), then control and origin."""
        await stop_all(self.live)
        edges = [s.proc for s in self.slots if s.proc]
        await stop_all(edges + ([self.steering] if self.steering else []))
        await stop_all([p for p in (self.control, self.origin, self.acme) if p])

    def dead(self) -> list[Proc]:
        """Services that exited on their own."""
        return [p for p in self.procs() if p.process is not None and not p.running]
