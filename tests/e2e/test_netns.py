"""Multi-site steering over real networks: network namespaces for a cloud host (control,
origin, steering), two ISP sites each with an appliance, and a client host per site, joined
by a router namespace. Every address lives inside namespaces this test creates, so no
packet leaves them; the fixture deletes them all, whatever happens."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from onebox.procs import Proc, stop_all
from tests.conftest import require_root, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.root]

ZONE = "cdn.example."
NAME = "edge." + ZONE
PREFIX = "10.77"  # RFC 1918, used only inside the namespaces below
CLOUD = f"{PREFIX}.0.2"
RESOLVER = f"{PREFIX}.50.2"
HEARTBEAT = 0.5


@dataclass(frozen=True)
class Host:
    """A namespace with one link to the router: its address, on subnet {PREFIX}.{net}.0/24."""

    role: str
    net: int

    @property
    def addr(self) -> str:
        return f"{PREFIX}.{self.net}.2"

    @property
    def gateway(self) -> str:
        return f"{PREFIX}.{self.net}.1"


HOSTS = {
    "cloud": Host("cloud", 0),
    "appl1": Host("appl1", 1),
    "appl2": Host("appl2", 2),
    "client1": Host("client1", 11),
    "client2": Host("client2", 12),
    "resolver": Host("resolver", 50),
}
SITES = {  # site -> (appliance host, client host)
    "isp1": ("appl1", "client1"),
    "isp2": ("appl2", "client2"),
}


def sh(*argv: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


class Lab:
    """The namespaces and links; `ns(role)` is a namespace's name."""

    def __init__(self) -> None:
        self.tag = f"vcdn{os.getpid() % 100000}"
        self.router = f"{self.tag}-router"
        self.made: list[str] = []

    def ns(self, role: str) -> str:
        return f"{self.tag}-{role}"

    def build(self) -> None:
        for name in [self.router] + [self.ns(r) for r in HOSTS]:
            sh("ip", "netns", "add", name)
            self.made.append(name)
            sh("ip", "link", "set", "lo", "up", ns=name)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.router)
        for i, (role, host) in enumerate(HOSTS.items()):
            inside, outside = f"v{self.tag[-5:]}h{i}", f"v{self.tag[-5:]}r{i}"
            sh("ip", "link", "add", inside, "netns", self.ns(role), "type", "veth",
               "peer", "name", outside, "netns", self.router)
            sh("ip", "addr", "add", f"{host.addr}/24", "dev", inside, ns=self.ns(role))
            sh("ip", "link", "set", inside, "up", ns=self.ns(role))
            sh("ip", "route", "add", "default", "via", host.gateway, ns=self.ns(role))
            sh("ip", "addr", "add", f"{host.gateway}/24", "dev", outside, ns=self.router)
            sh("ip", "link", "set", outside, "up", ns=self.router)

    def destroy(self) -> None:
        for name in reversed(self.made):
            sh("ip", "netns", "del", name, check=False)
        self.made.clear()


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root("network namespaces")
    for tool in ("ip", "curl", "dig"):
        require_tool(tool)
    lab = Lab()
    try:
        lab.build()
        yield lab
    finally:
        lab.destroy()


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "vcdn.cli", *args]


def dig(lab: Lab, role: str, *extra: str) -> list[str]:
    """The A records a client host gets for the demo name from steering's DNS."""
    out = sh("dig", f"@{CLOUD}", "-p", "53", NAME, "A", "+short", "+time=2", "+tries=1",
             *extra, ns=lab.ns(role))
    return sorted(line for line in out.stdout.split() if line)


def wait_dig(lab: Lab, role: str, want: list[str], *extra: str, within: float = 15.0) -> float:
    start = time.monotonic()
    got: list[str] = []
    while time.monotonic() - start < within:
        got = dig(lab, role, *extra)
        if got == want:
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{role} got {got} for {NAME}, wanted {want}")


def ctl(lab: Lab, action: str, config: Path) -> subprocess.CompletedProcess[str]:
    """`vcdn appliance-ctl ACTION` on site 1's appliance host, as its operator would."""
    argv = in_ns(lab.ns("appl1"), "appliance-ctl", action, "--appliance",
                 "http://127.0.0.1:8081", "--config", str(config))
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def curl_ok(lab: Lab, role: str, url: str) -> bool:
    return sh("curl", "-sf", "-o", "/dev/null", "--max-time", "1", url,
              ns=lab.ns(role), check=False).returncode == 0


async def wait_healthy(lab: Lab, role: str, url: str, proc: Proc, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not curl_ok(lab, role, url):
        if not proc.running or time.monotonic() > deadline:
            raise AssertionError(f"{proc.name} is not healthy at {url}:\n{proc.tail()}")
        await asyncio.sleep(0.2)


def enroll(db: Path, appliance: str, site: str, prefixes: list[str]) -> str:
    """The operator enrols an appliance (the documented CLI); its bound token."""
    argv = [sys.executable, "-m", "vcdn.cli", "control", "appliance", "enroll", "--id", appliance,
            "--site", site, "--db", f"sqlite:///{db}"]
    for p in prefixes:
        argv += ["--prefix", p]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


def appliance_toml(path: Path, site: str, host: Host, client: Host, cache: Path,
                   tokens: dict[str, str]) -> None:
    path.write_text(f"""
id = "{site}-a1"
site = "{site}"
public_url = "http://{host.addr}:8080"
cache_dir = "{cache}"
cache_capacity = "256MiB"
cache_free_floor = "1MiB"
control_url = "http://{CLOUD}:8090"
origin_url = "http://{CLOUD}:8080"
prefixes = ["{PREFIX}.{client.net}.0/24", "{PREFIX}.{host.net}.0/24"]
host = "{host.addr}"
port = 8080
admin_host = "127.0.0.1"
admin_port = 8081
control_token = "{tokens[site]}"
operator_token = "{tokens['admin']}"
signing_keys = "{tokens['keys']}"
fill_window = "00:00-00:00"
heartbeat_interval = {HEARTBEAT}
drain_timeout = 0.5
""")
    path.chmod(0o600)


async def test_each_site_gets_its_own_appliance_and_the_other_site_when_drained(
    lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tok = {r: "vcdn_" + secrets.token_urlsafe(20) for r in ("operator", "steering", "admin")}
    tok["keys"] = "k1:" + secrets.token_urlsafe(24)
    for site, (appl, client) in SITES.items():
        nets = [f"{PREFIX}.{HOSTS[h].net}.0/24" for h in (client, appl)]
        tok[site] = enroll(tmp_path / "c.sqlite", f"{site}-a1", site, nets)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCDN_")}
    cloud = lab.ns("cloud")
    (tmp_path / "origin").mkdir()
    procs: list[Proc] = [
        Proc("control", in_ns(cloud, "control", "--db", f"sqlite:///{tmp_path}/c.sqlite",
                              "--host", CLOUD, "--port", "8090"),
             log_path=tmp_path / "control.log",
             env=env | {"VCDN_CONTROL_TOKENS": f"operator:{tok['operator']},"
                        f"steering:{tok['steering']}",
                        "VCDN_CONTROL_HEARTBEAT_INTERVAL": str(HEARTBEAT),
                        "VCDN_CONTROL_STALE_AFTER_BEATS": "2"}),
        Proc("origin", in_ns(cloud, "origin", "--root", str(tmp_path / "origin"),
                             "--host", CLOUD, "--port", "8080"),
             log_path=tmp_path / "origin.log", env=env),
        Proc("steering", in_ns(cloud, "steering", "--control", f"http://{CLOUD}:8090",
                               "--zone", ZONE, "--host", CLOUD, "--dns-port", "53",
                               "--http-port", "8300", "--answers", "1",
                               "--poll-interval", "0.2"),
             log_path=tmp_path / "steering.log",
             env=env | {"VCDN_CONTROL_TOKEN": tok["steering"], "VCDN_SIGNING_KEYS": tok["keys"]}),
    ]
    for site, (appl, client) in SITES.items():
        config = tmp_path / f"{site}.toml"
        appliance_toml(config, site, HOSTS[appl], HOSTS[client], tmp_path / site, tok)
        procs.append(Proc(site, in_ns(lab.ns(appl), "appliance", "--config", str(config)),
                          log_path=tmp_path / f"{site}.log", env=env))
    try:
        for p in procs[:2]:
            await p.start()
        await wait_healthy(lab, "cloud", f"http://{CLOUD}:8090/healthz", procs[0])
        await wait_healthy(lab, "cloud", f"http://{CLOUD}:8080/healthz", procs[1])
        for p in procs[2:]:
            await p.start()
        await wait_healthy(lab, "cloud", f"http://{CLOUD}:8300/healthz", procs[2])
        for p, (appl, _) in zip(procs[3:], SITES.values(), strict=True):
            await wait_healthy(lab, appl, f"http://{HOSTS[appl].addr}:8080/healthz", p)

        appl1, appl2 = HOSTS["appl1"].addr, HOSTS["appl2"].addr
        # Each client, from its own address, gets its own site's appliance.
        wait_dig(lab, "client1", [appl1])
        wait_dig(lab, "client2", [appl2])
        # A resolver elsewhere, passing its client's subnet in ECS (RFC 7871), gets that
        # client's site; the answer's scope tells the resolver how far it may reuse it.
        assert dig(lab, "resolver", f"+subnet={PREFIX}.12.0/24") == [appl2]
        assert dig(lab, "resolver", f"+subnet={PREFIX}.11.0/24") == [appl1]
        ecs = sh("dig", f"@{CLOUD}", "-p", "53", NAME, "A", f"+subnet={PREFIX}.12.0/24",
                 ns=lab.ns("resolver")).stdout
        assert f"CLIENT-SUBNET: {PREFIX}.12.0/24/" in ecs

        # Site 1's appliance drains: client 1 moves to site 2, client 2 is unaffected.
        drain = ctl(lab, "drain", tmp_path / "isp1.toml")
        assert drain.returncode == 0, drain.stderr
        moved = wait_dig(lab, "client1", [appl2])
        assert dig(lab, "client2") == [appl2]
        # Undrained, it comes back.
        assert ctl(lab, "undrain", tmp_path / "isp1.toml").returncode == 0
        wait_dig(lab, "client1", [appl1])
        with capsys.disabled():
            print(f"\nnetns: client1 moved to site isp2 {moved:.2f} s after its appliance drained")
    finally:
        await stop_all(procs, grace=3.0)


def test_the_lab_leaves_no_namespace_behind() -> None:
    """Runs after the test above (file order): its namespaces are gone."""
    require_root("network namespaces")
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"vcdn{os.getpid() % 100000}-" not in names
