"""`vcdn up --tls` with pebble: its settings and the shared HTTP-01 port (pure parts)."""

from __future__ import annotations

import socket
from pathlib import Path

from onebox.acmeserver import AcmePorts, config, directory_url
from onebox.cluster import common_free_port
from onebox.localca import LocalCA


def test_pebble_listens_with_the_local_ca_certificate_and_validates_on_the_shared_port(
) -> None:
    ca = LocalCA(Path("/d/ca.pem"), Path("/d/server.pem"), Path("/d/server.key"))
    ports = AcmePorts(api=1001, management=1002, tls_alpn=1003, http01=1004)
    got = config(ca, "127.0.0.1", ports)["pebble"]
    assert got["listenAddress"] == "127.0.0.1:1001"  # type: ignore[index]
    assert got["certificate"] == "/d/server.pem" and got["httpPort"] == 1004  # type: ignore[index]
    assert directory_url("127.0.0.1", ports) == "https://127.0.0.1:1001/dir"


def test_the_shared_port_is_free_on_every_appliance_address() -> None:
    hosts = ["127.0.0.10", "127.0.0.11", "127.0.0.12"]
    port = common_free_port(hosts)
    socks = []
    try:
        for host in hosts:
            s = socket.socket()
            socks.append(s)
            s.bind((host, port))
    finally:
        for s in socks:
            s.close()
