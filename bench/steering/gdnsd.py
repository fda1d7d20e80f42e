"""gdnsd, the established authoritative server we compare with: a temporary config
directory, a high loopback port, one UDP thread per core
the comparison gives each server."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

ZONE = """$TTL 20
@ SOA ns1 hostmaster 1 3600 600 86400 30
@ NS ns1
ns1 A 127.0.0.53
{edge}
"""

GEOIP_PLUGIN = """plugins => {{
  geoip => {{
    maps => {{
      bench => {{
        geoip2_db => {city},
        datacenters => [dc1, dc2, dc3],
        nets => {{ 10.0.0.0/8 => [dc3, dc1] }},
        map => {{
          EU => [dc1, dc2, dc3],
          NA => [dc2, dc1, dc3],
          default => [dc3, dc2, dc1],
        }}
      }}
    }}
    resources => {{
      edge => {{
        map => bench,
        dcmap => {{ dc1 => 127.0.10.1, dc2 => 127.0.11.1, dc3 => 127.0.12.1 }}
      }}
    }}
  }}
}}
"""


def write_config(root: Path, port: int, geoip_city: Path | None, threads: int = 1) -> Path:
    (root / "zones").mkdir(parents=True, exist_ok=True)
    (root / "run").mkdir(exist_ok=True)
    (root / "state").mkdir(exist_ok=True)
    plugin = ""
    edge = "edge A 127.0.10.1\nedge A 127.0.10.2"
    if geoip_city is not None:
        (root / "geoip").mkdir(exist_ok=True)
        shutil.copy(geoip_city, root / "geoip" / "city.mmdb")
        plugin = GEOIP_PLUGIN.format(city="city.mmdb")
        edge = "edge 20 DYNA geoip!edge"
    (root / "config").write_text(
        "options => {\n"
        f"  listen => [ 127.0.0.1:{port} ]\n"
        f"  run_dir => {root / 'run'}\n"
        f"  state_dir => {root / 'state'}\n"
        f"  udp_threads => {threads}\n  tcp_threads => 1\n"
        "}\n" + plugin
    )
    (root / "zones" / "cdn.example").write_text(ZONE.format(edge=edge))
    return root


def start(root: Path, cpu: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["taskset", "-c", str(cpu), "gdnsd", "-c", str(root), "start"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.5)
    if proc.poll() is not None:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"gdnsd did not start: {err[-500:]}")
    return proc
