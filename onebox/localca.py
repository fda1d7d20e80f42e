"""A local certificate authority for `vcdn up --tls`: one CA, one server certificate.

Made with `cryptography`, kept under the state directory (``data/tls/``) and reused while
it is valid and covers the names asked for, so a browser or NSS database told to trust
the CA once keeps trusting it. The CA's key never leaves that directory (mode 0600).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CA_DAYS: Final = 365
LEAF_DAYS: Final = 90  # like a public ACME certificate
RENEW_MARGIN: Final = dt.timedelta(days=7)


@dataclass(frozen=True)
class LocalCA:
    ca_cert: Path  # give this to clients (`ca_bundle`, VCDN_CA_BUNDLE, curl --cacert)
    cert: Path  # the servers' chain (leaf, CA)
    key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _usable(out: LocalCA, names: list[str], now: dt.datetime) -> bool:
    from cryptography import x509

    from vcdn.tls import certificate_names

    try:
        pem = out.cert.read_bytes()
        leaf = x509.load_pem_x509_certificate(pem)
        out.key.stat()
        out.ca_cert.stat()
    except (OSError, ValueError):
        return False
    return (leaf.not_valid_after_utc - RENEW_MARGIN > now
            and set(names) <= set(certificate_names(pem)))


def ensure(where: Path, names: list[str], now: dt.datetime | None = None) -> LocalCA:
    """The CA and a certificate for `names` (host names and IP addresses) under `where`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = now or dt.datetime.now(dt.UTC)
    out = LocalCA(where / "ca.pem", where / "server.pem", where / "server.key")
    if _usable(out, names, now):
        return out
    where.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vcdn up local CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name).public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(where / "ca.key", ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()), 0o600)
    _write(out.key, leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()), 0o600)
    _write(out.cert, leaf.public_bytes(pem) + ca.public_bytes(pem), 0o644)
    _write(out.ca_cert, ca.public_bytes(pem), 0o644)
    return out
