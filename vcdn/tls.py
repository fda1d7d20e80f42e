"""TLS policy and parsing shared by every vcdn listener and client (no I/O here).

The settings every server inherits (`TlsOptions`), the certificate pairs they name, the
names a certificate is for and the SNI choice among chains (`pick`), the one cipher
policy, and how a failed handshake is said in one sentence (`describe_failure`). The
contexts, certificate stores and reloads that act on files and sockets are in
`vcdn.tls_io`, which also explains the policy and what Python allows.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from vcdn.errors import ConfigError

CA_BUNDLE_ENV: Final = "VCDN_CA_BUNDLE"
ALPN: Final = ("http/1.1",)
#: Mozilla Server Side TLS, "intermediate" configuration (version 5.7), TLS 1.2 suites.
#: The DHE suites need DH parameters, which we do not load: only the ECDHE ones negotiate.
INTERMEDIATE_CIPHERS: Final = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
))


@dataclass(frozen=True, kw_only=True)
class TlsOptions:
    """TLS settings every service's settings dataclass inherits (`[tls]` in TOML)."""

    #: PEM certificate chain (leaf first) and its key; both or neither.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: More chains for SNI, each "CERTFILE:KEYFILE"; each answers for its own names.
    tls_certs: tuple[str, ...] = ()
    #: Serve HTTPS on this port beside plain HTTP on `port` (None: HTTPS replaces HTTP).
    tls_port: int | None = None
    #: CA certificates (PEM) that clients of this service trust instead of the system's.
    ca_bundle: Path | None = None
    #: Server: ask clients for a certificate and verify it against this CA (mutual TLS).
    tls_client_ca: Path | None = None
    #: Client: the certificate chain and key this service presents when asked (mTLS).
    tls_client_cert: Path | None = None
    tls_client_key: Path | None = None

    def cert_pairs(self) -> list[CertPair]:
        """Every configured chain, the default (`tls_cert`) first; [] when TLS is off."""
        return cert_pairs(self.tls_cert, self.tls_key, self.tls_certs)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def cert_pairs(cert: Path | None, key: Path | None, extra: Sequence[str] = ()) -> list[CertPair]:
    """The settings' chains as pairs; a lone cert or key, or a bad pair, is a ConfigError."""
    if (cert is None) != (key is None):
        raise ConfigError("Settings 'tls_cert' and 'tls_key' go together: set both or neither.")
    pairs = [CertPair(cert, key)] if cert is not None and key is not None else []
    for item in extra:
        c, sep, k = item.partition(":")
        if not sep or not c.strip() or not k.strip():
            raise ConfigError(f"Setting 'tls_certs' needs 'CERTFILE:KEYFILE' items, got {item!r}.")
        pairs.append(CertPair(Path(c.strip()), Path(k.strip())))
    if extra and cert is None:
        raise ConfigError("Setting 'tls_certs' needs a default chain in 'tls_cert'/'tls_key'.")
    return pairs


def certificate_names(pem: bytes) -> tuple[str, ...]:
    """The DNS names (and IP addresses, as text) the first certificate in `pem` is for."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = san.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return tuple(n.lower() for n in dns) + tuple(ips)


def pick(server_name: str | None, names: Sequence[tuple[str, ...]]) -> int:
    """Index of the chain for an SNI name: an exact name first, then a one-label
    wildcard (RFC 6125 §6.4.3), else 0 (the default chain)."""
    if not server_name:
        return 0
    wanted = server_name.lower().rstrip(".")
    for i, chain in enumerate(names):
        if wanted in chain:
            return i
    for i, chain in enumerate(names):
        for name in chain:
            if name.startswith("*.") and "." in wanted and wanted.split(".", 1)[1] == name[2:]:
                return i
    return 0


def peer_identity(peercert: dict[str, Any] | None) -> str | None:
    """The common name of a verified client certificate (`getpeercert()`), or None."""
    if not peercert:
        return None
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


_REASONS: Final = {
    "unable to get local issuer certificate": "it is signed by an unknown CA",
    "self-signed certificate": "it is self-signed and not trusted here",
    "self signed certificate": "it is self-signed and not trusted here",
    "self-signed certificate in certificate chain": "its chain ends at an untrusted CA",
    "self signed certificate in certificate chain": "its chain ends at an untrusted CA",
    "certificate has expired": "it has expired",
    "certificate is not yet valid": "it is not valid yet",
}


def reason_of(exc: BaseException) -> str:
    """Why a TLS handshake failed, in words (no OpenSSL codes or stack)."""
    cert_error = getattr(exc, "certificate_error", None) or exc
    if isinstance(cert_error, ssl.SSLCertVerificationError):
        message = cert_error.verify_message or str(cert_error)
        if message.startswith(("Hostname mismatch", "IP address mismatch")):
            return f"its certificate is for another name ({message.split(',', 1)[-1].strip()})"
        return f"its certificate cannot be trusted: {_REASONS.get(message, message)}"
    os_error = getattr(exc, "os_error", None) or exc
    if isinstance(os_error, ssl.SSLError):
        reason = (os_error.reason or str(os_error)).lower().replace("_", " ")
        if "wrong version number" in reason or "record layer failure" in reason:
            return "it does not speak TLS there (plain HTTP?)"
        if "unsupported protocol" in reason or "protocol version" in reason:
            return "it offers no TLS version we accept (1.2 or 1.3)"
        return f"the TLS handshake failed: {reason}"
    return f"the TLS handshake failed: {exc}"


def describe_failure(exc: BaseException, what: str, url: str) -> str:
    """One line: which peer, what failed. `what` names the peer ("control API")."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.netloc or url
    return f"TLS to the {what} at {host} failed: {reason_of(exc)}."


def add_tls_args(parser: Any, *, tls_port: bool = True) -> None:
    """The TLS flags every server takes (`tls_overrides` maps them onto settings)."""
    parser.add_argument("--tls-cert", type=Path, metavar="FILE",
                        help="PEM certificate chain, leaf first: serve HTTPS")
    parser.add_argument("--tls-key", type=Path, metavar="FILE", help="PEM key of --tls-cert")
    if tls_port:
        parser.add_argument("--tls-port", type=int, metavar="P",
                            help="serve HTTPS on this port and plain HTTP on --port "
                            "(without it, --tls-cert makes --port HTTPS)")


def tls_overrides(args: Any) -> dict[str, Any]:
    return {k: getattr(args, k, None) for k in ("tls_cert", "tls_key", "tls_port")}
