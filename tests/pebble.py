"""Debian's `pebble` (the ACME test server) on loopback, for the ACME tests.

Its own HTTPS listener uses a certificate from a trustme CA (`ca`); it validates HTTP-01
against ``http://NAME:http_port`` (the port under test), with no artificial sleeps.
Its issuing root is regenerated per run and read from the management listener.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme

from onebox.procs import free_port
from tests.conftest import require_tool


@dataclass
class Pebble:
    directory: str
    ca_bundle: Path  # trusts pebble's own HTTPS listener
    root: Path  # pebble's issuing root: trusts the certificates it issues
    proc: subprocess.Popen[bytes]


@contextmanager
def pebble(where: Path, http_port: int) -> Iterator[Pebble]:
    binary = require_tool("pebble")
    where.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(where / "pebble.pem"))
    ca.cert_pem.write_to_path(str(where / "pebble-ca.pem"))
    port, mgmt = free_port(), free_port()
    config = {"pebble": {
        "listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{mgmt}",
        "certificate": str(where / "pebble.pem"), "privateKey": str(where / "pebble.pem"),
        "httpPort": http_port, "tlsPort": free_port(), "ocspResponderURL": "",
        "externalAccountBindingRequired": False,
    }}
    (where / "pebble.json").write_text(json.dumps(config))
    log = open(where / "pebble.log", "wb")
    env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
    proc = subprocess.Popen([binary, "-config", str(where / "pebble.json")], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    ctx = ssl.create_default_context(cafile=str(where / "pebble-ca.pem"))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{mgmt}/roots/0", context=ctx,
                                            timeout=2) as resp:
                    (where / "pebble-root.pem").write_bytes(resp.read())
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    text = (where / "pebble.log").read_text()
                    raise AssertionError(f"pebble did not start: {text}") from None
                time.sleep(0.1)
        yield Pebble(f"https://127.0.0.1:{port}/dir", where / "pebble-ca.pem",
                     where / "pebble-root.pem", proc)
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
