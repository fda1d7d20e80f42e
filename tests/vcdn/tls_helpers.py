"""Test CAs and certificate files (trustme), and real TLS clients (openssl, curl)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.conftest import require_tool


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def issue(ca: trustme.CA, where: Path, *names: str,
          key_type: trustme.KeyType = trustme.KeyType.ECDSA) -> Issued:
    """A chain (leaf first) and its key, in two PEM files named after the first name."""
    leaf = ca.issue_cert(*names, common_name=names[0], key_type=key_type)
    where.mkdir(parents=True, exist_ok=True)
    stem = names[0].replace("*", "star")
    cert, key = where / f"{stem}.crt", where / f"{stem}.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    return Issued(cert, key)


def ca_file(ca: trustme.CA, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    path = where / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


async def run(*argv: str, stdin: bytes = b"", within: float = 20.0) -> tuple[int, str]:
    """Run a real client; returns (exit status, stdout+stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin), within)
    return proc.returncode or 0, out.decode(errors="replace")


async def s_client(port: int, *extra: str, stdin: bytes = b"") -> tuple[int, str]:
    """`openssl s_client` against 127.0.0.1:port, sending `stdin`."""
    openssl = require_tool("openssl")
    return await run(openssl, "s_client", "-connect", f"127.0.0.1:{port}", *extra, stdin=stdin)


async def peer_names(port: int, server_name: str | None, ca: Path) -> str:
    """The names of the certificate a handshake with SNI `server_name` got."""
    return await asyncio.to_thread(_peer_names, port, server_name, ca)


def _peer_names(port: int, server_name: str | None, ca: Path) -> str:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        cert = tls.getpeercert()
    assert cert is not None
    return ",".join(str(value) for _, value in cert["subjectAltName"])
