"""An ACME server for `vcdn up --tls`: Debian's `pebble` (the ACME test server) on loopback.

With it the appliances get their certificates the way a real box would, by ACME with
HTTP-01 answered on their plain listener, instead of straight from the local CA. Pebble's
own HTTPS listener uses the local CA's server certificate (it covers 127.0.0.1), so
clients that trust the local CA reach it; the certificates it issues chain to a root it
makes afresh on every start, read from its management listener. Clients then trust a
bundle of both (`bundle`). Pebble validates HTTP-01 on one port for every name, so the
appliances share one plain port number, each on its own loopback address.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

from onebox.localca import LocalCA
from onebox.procs import Proc
from vcdn.tls_io import client_connector

BINARY: Final = "pebble"


def available() -> bool:
    """Whether `pebble` is installed (`make demo` and `make test` install it)."""
    return shutil.which(BINARY) is not None


@dataclass(frozen=True)
class AcmePorts:
    api: int  # the ACME directory
    management: int  # its issuing roots
    tls_alpn: int  # unused (HTTP-01 only) but pebble listens on it
    http01: int  # where it validates HTTP-01: the appliances' plain port


def config(ca: LocalCA, host: str, ports: AcmePorts) -> dict[str, object]:
    """Pebble's settings file (pure)."""
    return {"pebble": {
        "listenAddress": f"{host}:{ports.api}",
        "managementListenAddress": f"{host}:{ports.management}",
        "certificate": str(ca.cert), "privateKey": str(ca.key),
        "httpPort": ports.http01, "tlsPort": ports.tls_alpn, "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }}


def directory_url(host: str, ports: AcmePorts) -> str:
    return f"https://{host}:{ports.api}/dir"


def proc(where: Path, ca: LocalCA, host: str, ports: AcmePorts, log_path: Path,
         env: dict[str, str]) -> Proc:
    """The pebble process (not started); healthy once its management listener answers."""
    where.mkdir(parents=True, exist_ok=True)
    path = where / "pebble.json"
    path.write_text(json.dumps(config(ca, host, ports)))
    # No artificial validation delays, no nonce rejections: this is a demo, not a test of
    # a client's retries.
    env = {**env, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    return Proc("acme", [shutil.which(BINARY) or BINARY, "-config", str(path)],
                log_path=log_path, env=env,
                health_url=f"https://{host}:{ports.management}/roots/0", ca_bundle=ca.ca_cert)


async def fetch_root(ca: LocalCA, host: str, ports: AcmePorts) -> bytes:
    """Pebble's issuing root (PEM), from its management listener."""
    url = f"https://{host}:{ports.management}/roots/0"
    async with aiohttp.ClientSession(connector=client_connector(ca.ca_cert)) as session, \
            session.get(url) as resp:
        resp.raise_for_status()
        return await resp.read()


def write_bundle(ca: LocalCA, root_pem: bytes, root: Path, bundle: Path) -> None:
    """Save pebble's root to `root` and the local CA plus that root to `bundle`."""
    root.write_bytes(root_pem)
    bundle.write_bytes(ca.ca_cert.read_bytes().rstrip(b"\n") + b"\n" + root_pem)
