"""Getting a certificate from an ACME server (RFC 8555) with the `acme` library (certbot's).

`obtain` registers (or finds) the account, orders the names, answers each HTTP-01
challenge through a `vcdn.acme_http.Challenges` that a listener on port 80 (or the ACME
server's validation port) serves, finalizes with a CSR for a fresh P-256 key, and
returns the full chain and the key as PEM. It blocks (the library speaks `requests`):
callers in an event loop run it in a thread.

`renew_due` is the pure renewal rule: renew once `fraction` of the lifetime has passed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from vcdn.acme_http import Challenges
from vcdn.errors import UpstreamError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

USER_AGENT: Final = "vcdn-acme"
ORDER_TIMEOUT: Final = 90.0


@dataclass(frozen=True)
class Issued:
    fullchain_pem: bytes
    key_pem: bytes


def _account_key(path: Path | None):  # type: ignore[no-untyped-def]
    """The account's JWK: loaded from `path`, else made (and saved there when given)."""
    import josepy as jose
    from cryptography.hazmat.primitives.asymmetric import rsa

    if path is not None and path.exists():
        return jose.JWKRSA.json_loads(path.read_text())
    key = jose.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps(key.to_json()))
        tmp.replace(path)
    return key


def obtain(
    directory: str,
    domains: list[str],
    challenges: Challenges,
    *,
    email: str = "",
    account_key: Path | None = None,
    ca_bundle: Path | str | None = None,
    timeout: float = ORDER_TIMEOUT,
) -> Issued:
    """Order a certificate for `domains`; UpstreamError says which step failed and why."""
    from acme import challenges as acme_challenges
    from acme import client, crypto_util, errors, messages
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _account_key(account_key)
    net = client.ClientNetwork(key, user_agent=USER_AGENT,
                               verify_ssl=_verify(ca_bundle))  # type: ignore[arg-type]
    published: list[str] = []
    step = "read the directory"
    try:
        acme = client.ClientV2(client.ClientV2.get_directory(directory, net), net=net)
        step = "register the account"
        registration = messages.NewRegistration.from_data(
            email=email or None, terms_of_service_agreed=True)
        try:
            acme.new_account(registration)
        except errors.ConflictError as exc:  # the key already has an account: use it
            acme.net.account = messages.RegistrationResource(
                uri=exc.location, body=messages.Registration())
        cert_key = ec.generate_private_key(ec.SECP256R1())
        key_pem = cert_key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        step = "order the certificate"
        names, ips = split_identifiers(domains)
        order = acme.new_order(crypto_util.make_csr(key_pem, names or None, ipaddrs=ips or None))
        step = "answer the HTTP-01 challenges"
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # the server reused an authorization this account already holds
            http01 = [c for c in authz.body.challenges
                      if isinstance(c.chall, acme_challenges.HTTP01)]
            if not http01:
                raise UpstreamError(
                    f"ACME server {directory} offers no HTTP-01 challenge for "
                    f"{authz.body.identifier.value}.")
            response, validation = http01[0].response_and_validation(key)
            token = http01[0].chall.encode("token")
            challenges.publish(token, validation)
            published.append(token)
            acme.answer_challenge(http01[0], response)
        step = "finalize the order"
        deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)
        done = acme.poll_and_finalize(order, deadline=deadline)
    except UpstreamError:
        raise
    except errors.ValidationError as exc:
        problems = "; ".join(
            f"{a.body.identifier.value}: {_problem(a)}" for a in exc.failed_authzrs)
        raise UpstreamError(f"ACME server {directory} could not validate {problems}.") from None
    except Exception as exc:  # the library's own tree plus requests' errors
        raise UpstreamError(f"ACME: could not {step} at {directory}: {_one_line(exc)}.") \
            from None
    finally:
        for token in published:
            challenges.withdraw(token)
    return Issued(done.fullchain_pem.encode(), key_pem)


def split_identifiers(domains: list[str]) -> tuple[list[str], list[IPAddress]]:
    """Host names apart from IP addresses: an address is ordered as an IP identifier
    (RFC 8738) with an IP SAN, as a box known only by its address needs."""
    names: list[str] = []
    ips: list[IPAddress] = []
    for value in domains:
        try:
            ips.append(ipaddress.ip_address(value))
        except ValueError:
            names.append(value)
    return names, ips


def _verify(ca_bundle: Path | str | None) -> str | bool:
    """What `requests` verifies the ACME server with: the same trust as every vcdn client
    (`ca_bundle`, else VCDN_CA_BUNDLE, else the system store, not certifi's bundle)."""
    import ssl

    from vcdn.settings import env_value
    from vcdn.tls import CA_BUNDLE_ENV

    bundle = ca_bundle or env_value(CA_BUNDLE_ENV)
    if bundle:
        return str(bundle)
    paths = ssl.get_default_verify_paths()
    return paths.cafile or paths.capath or True


def _problem(authz) -> str:  # type: ignore[no-untyped-def]
    for c in authz.body.challenges:
        if c.error is not None:
            return str(c.error.detail or c.error.typ)
    return str(authz.body.status)


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]


def renew_due(not_before: dt.datetime, not_after: dt.datetime, now: dt.datetime,
              fraction: float = 2 / 3) -> bool:
    """True once `fraction` of the certificate's lifetime has passed."""
    return now >= not_before + (not_after - not_before) * fraction


def renew_at(not_before: dt.datetime, not_after: dt.datetime, fraction: float = 2 / 3
             ) -> dt.datetime:
    return not_before + (not_after - not_before) * fraction


def validity(pem: bytes) -> tuple[dt.datetime, dt.datetime]:
    """(not_before, not_after) of the first certificate in `pem`, in UTC."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    return cert.not_valid_before_utc, cert.not_valid_after_utc
