"""TLS contexts for every vcdn listener and client: one policy, chains picked by SNI, reloads.

Server side. `server_context` builds the one policy every listener runs: TLS 1.2 and 1.3
only, Mozilla's "intermediate" cipher list for TLS 1.2 (TLS 1.3 suites are all AEAD and
left at OpenSSL's order), ALPN ``http/1.1``, no TLS compression, no renegotiation. A
listener holds a `CertStore`: several certificate chains, each answering for the DNS
names its own certificate carries (``subjectAltName``), chosen per handshake by the
client's SNI in ``sni_callback``; a handshake without SNI, or for a name no certificate
carries, gets the first chain. Because the choice is made per handshake, swapping the
store (`CertStore.swap`, driven by `CertWatch` on SIGHUP or a changed file) puts new
certificates into service for new connections while open ones keep theirs: nothing is
dropped.

Session resumption. OpenSSL issues TLS 1.3 session tickets (two per full handshake) and
TLS 1.2 tickets, encrypted with the keys of the listener's context, which lives as long as
the listening socket, so resumption works across certificate reloads. Those keys are drawn
by `vcdn.tls_tickets` at start and again every hour (`CertWatch` rotates them); they are
never written to disk.

Kernel TLS. With the Linux ``tls`` ULP the kernel encrypts records itself, and sendfile(2)
could send page cache to a TLS client without a copy through user space; OpenSSL turns it
on (``ssl.OP_ENABLE_KTLS``, Python 3.12+, OpenSSL 3 built with ktls) for sockets it owns.
asyncio's and uvloop's TLS transports feed OpenSSL through memory BIOs, never the socket,
so even where both exist their connections cannot hand encryption to the kernel.
`kernel_tls` probes the three conditions once per process and says which send path TLS
hits take (`tls_send_path`): here always pread + write through the transport.

Client side. `client_context` verifies against the system store or a CA bundle
(``ca_bundle`` setting, else ``VCDN_CA_BUNDLE``); there is no switch to turn
verification off. `describe_failure` turns aiohttp's TLS errors into one sentence naming
the peer and the reason (name mismatch, unknown CA, expired, not TLS at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcdn.errors import ConfigError
from vcdn.keyreload import POLL_SECONDS, add_sighup, file_stamp
from vcdn.logs import event
from vcdn.tls import ALPN, CA_BUNDLE_ENV, INTERMEDIATE_CIPHERS, CertPair, certificate_names, pick
from vcdn.tls_tickets import TicketKeys

log = logging.getLogger("vcdn.tls")


def server_context(pair: CertPair | None = None, client_ca: Path | None = None
                   ) -> ssl.SSLContext:
    """A server context with the one vcdn policy, holding `pair` if given; with
    `client_ca`, a client certificate is asked for and, when sent, must chain to it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_ciphers(INTERMEDIATE_CIPHERS)
    ctx.set_alpn_protocols(list(ALPN))
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if client_ca is not None:
        try:
            ctx.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"Client CA '{client_ca}' is not a readable PEM file of CA certificates "
                f"({exc}).") from None
        ctx.verify_mode = ssl.CERT_OPTIONAL  # which callers need one is the app's to say
    if pair is not None:
        try:
            ctx.load_cert_chain(pair.cert, pair.key)
        except FileNotFoundError as exc:
            # ssl leaves `filename` unset: name the first of the pair that is missing.
            missing = exc.filename or next(
                (p for p in (pair.cert, pair.key) if not p.exists()), pair.cert)
            raise ConfigError(f"TLS file '{missing}' does not exist.") from None
        except ssl.SSLError as exc:
            raise ConfigError(
                f"TLS chain '{pair.cert}' and key '{pair.key}' are not a PEM certificate "
                f"chain with its matching private key ({exc.reason or exc})."
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"TLS chain '{pair.cert}' or key '{pair.key}' cannot be read: "
                f"{exc.strerror or exc}."
            ) from None
    return ctx


@dataclass(frozen=True)
class CertSet:
    """Loaded chains: one context per chain and the names each answers for."""

    pairs: tuple[CertPair, ...]
    contexts: tuple[ssl.SSLContext, ...]
    names: tuple[tuple[str, ...], ...]
    stamp: tuple[tuple[str, int, int], ...]
    client_ca: Path | None = None


def load_certs(pairs: Sequence[CertPair], client_ca: Path | None = None) -> CertSet:
    """Read and check every chain (a ConfigError names the file and what is wrong)."""
    if not pairs:
        raise ConfigError("TLS needs at least one certificate chain ('tls_cert', 'tls_key').")
    stamp = file_stamp(p for pair in pairs for p in (pair.cert, pair.key))
    # The client CA goes on every chain's context: OpenSSL verifies a client against the
    # store of the context SNI switched to.
    contexts = tuple(server_context(pair, client_ca) for pair in pairs)
    names = []
    for pair in pairs:
        try:
            names.append(certificate_names(pair.cert.read_bytes()))
        except ValueError as exc:
            raise ConfigError(f"TLS chain '{pair.cert}' is not a PEM certificate: {exc}.") from None
    return CertSet(tuple(pairs), contexts, tuple(names), stamp, client_ca)


class CertStore:
    """What a TLS listener serves: its `context` never changes, the chains behind it do."""

    def __init__(self, certs: CertSet) -> None:
        self.certs = certs
        self.context = server_context(certs.pairs[0], certs.client_ca)
        # The listener's own context holds the first chain: with one chain and no reload
        # yet no handshake needs the callback, which costs a Python call and a copy of the
        # chain into the connection (SSL_set_SSL_CTX) on every handshake, a fifth of a
        # resumed one's server time.
        self.context.sni_callback = self._select if len(certs.pairs) > 1 else None
        # Tickets are encrypted with the listener's context's keys whichever chain SNI
        # picks: one key set per listener, rotated by `CertWatch`.
        self.tickets = TicketKeys(self.context)

    def _select(self, sock: ssl.SSLObject, server_name: str | None, _: Any) -> None:
        certs = self.certs  # one read: a swap between lines cannot mix two sets
        sock.context = certs.contexts[pick(server_name, certs.names)]

    def swap(self, certs: CertSet) -> None:
        """New chains for new handshakes; open connections keep what they have."""
        self.certs = certs
        self.context.sni_callback = self._select  # the listener's context holds the old one


def listener(pairs: Sequence[CertPair], client_ca: Path | None = None) -> CertStore | None:
    """A `CertStore` for the configured chains, or None when TLS is off."""
    return CertStore(load_certs(pairs, client_ca)) if pairs else None


class CertWatch:
    """Reloads a `CertStore`'s chains on SIGHUP and when one of their files changes.

    A reload that fails (a key that does not match, a half-written file) keeps the chains
    in service and logs why; `failures` counts those, for an alert metric."""

    def __init__(
        self,
        store: CertStore,
        load: Callable[[], Sequence[CertPair]] | None = None,
        *,
        interval: float = POLL_SECONDS,
        on_reload: Callable[[CertSet], None] | None = None,
    ) -> None:
        self.store = store
        self._load = load or (lambda: store.certs.pairs)
        self._client_ca = store.certs.client_ca
        self._interval = interval
        self._on_reload = on_reload
        self.reloads = 0
        self.failures = 0
        self._failed: tuple[tuple[str, int, int], ...] | None = None

    def reload(self, reason: str) -> bool:
        try:
            certs = load_certs(self._load(), self._client_ca)
        except ConfigError as exc:
            self.failures += 1
            event(log, "tls_reload_failed", logging.ERROR, reason=reason, error=str(exc))
            return False
        self.store.swap(certs)
        self.reloads += 1
        event(log, "tls_reloaded", reason=reason, chains=[str(p.cert) for p in certs.pairs],
              names=[list(n) for n in certs.names])
        if self._on_reload is not None:
            self._on_reload(certs)
        return True

    def check(self) -> bool:
        pairs = self._load()
        stamp = file_stamp(p for pair in pairs for p in (pair.cert, pair.key))
        if stamp == self._failed or (
            stamp == self.store.certs.stamp and tuple(pairs) == self.store.certs.pairs
        ):
            return False  # unchanged, or the same broken files we already said so about
        if self.reload("file_changed"):
            self._failed = None
            return True
        self._failed = stamp
        return False

    async def run(self) -> None:
        """Until cancelled: SIGHUP reloads at once; files are polled every `interval`, and
        the session ticket keys rotated when due."""
        remove = add_sighup(lambda: self.reload("sighup"))
        try:
            while True:
                await asyncio.sleep(self._interval)
                self.store.tickets.rotate_if_due()
                with contextlib.suppress(ConfigError):
                    self.check()
        finally:
            remove()


# --- kernel TLS ----------------------------------------------------------------------

#: <linux/tcp.h> TCP_ULP (Python's socket module has no name for it).
TCP_ULP = 31
#: What TLS hits are sent with, by `tls_send_path`.
SEND_KTLS = "ktls+sendfile"
SEND_COPY = "pread+write"


@dataclass(frozen=True)
class KernelTls:
    """What the probe found: the kernel's ``tls`` ULP, Python's ``OP_ENABLE_KTLS``, and
    whether the serving transports let OpenSSL own the socket (they do not)."""

    ulp: bool
    python: bool
    transport: bool = False
    detail: str = ""

    @property
    def usable(self) -> bool:
        return self.ulp and self.python and self.transport


def probe_ulp() -> tuple[bool, str]:
    """Can a connected TCP socket take the ``tls`` ULP? (True, "") or (False, why).

    The ULP can only be set on an established connection, so a loopback pair is made and
    dropped; ENOENT means the kernel has no ``tls`` module (or may not load it)."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with socket.create_connection(srv.getsockname(), timeout=2) as cli:
            peer, _ = srv.accept()
            with peer:
                try:
                    cli.setsockopt(socket.IPPROTO_TCP, TCP_ULP, b"tls")
                except OSError as exc:
                    return False, f"setsockopt(TCP_ULP, 'tls'): {exc.strerror or exc}"
        return True, ""
    except OSError as exc:
        return False, f"probe connection failed: {exc.strerror or exc}"
    finally:
        srv.close()


@functools.cache
def kernel_tls() -> KernelTls:
    """The kernel TLS probe, once per process (a fork inherits the answer)."""
    ulp, why = probe_ulp()
    python = hasattr(ssl, "OP_ENABLE_KTLS")
    reasons = [f"no kernel tls ULP ({why})"] if not ulp else []
    if not python:
        reasons.append("Python's ssl has no OP_ENABLE_KTLS (3.12+)")
    reasons.append("asyncio TLS transports use memory BIOs: OpenSSL never owns the socket")
    return KernelTls(ulp=ulp, python=python, detail="; ".join(reasons))


def tls_send_path() -> str:
    """How a TLS hit's body is sent in this process: `SEND_KTLS` or `SEND_COPY`."""
    return SEND_KTLS if kernel_tls().usable else SEND_COPY


# --- clients -------------------------------------------------------------------------


def client_context(
    ca_bundle: Path | str | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> ssl.SSLContext:
    """A verifying client context: the system store, or `ca_bundle`, else
    ``VCDN_CA_BUNDLE``. Host names are always checked. `cert`/`key`: the client
    certificate presented to a server that asks (mutual TLS)."""
    from vcdn.settings import env_value

    bundle = ca_bundle or env_value(CA_BUNDLE_ENV) or None
    try:
        ctx = ssl.create_default_context(cafile=str(bundle) if bundle else None)
    except FileNotFoundError:
        raise ConfigError(f"CA bundle '{bundle}' does not exist.") from None
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"CA bundle '{bundle}' is not a PEM file of CA certificates ({exc}).") \
            from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(list(ALPN))
    if (cert is None) != (key is None):
        raise ConfigError(
            "Settings 'tls_client_cert' and 'tls_client_key' go together: set both or neither.")
    if cert is not None and key is not None:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"Client certificate '{cert}' and key '{key}' cannot be loaded ({exc}).") \
                from None
    return ctx


def client_connector(
    ca_bundle: Path | str | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    **kwargs: Any,
) -> Any:
    """An aiohttp connector that verifies with `client_context`."""
    import aiohttp

    return aiohttp.TCPConnector(ssl=client_context(ca_bundle, cert, key), **kwargs)
