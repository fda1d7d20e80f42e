"""The appliance's own certificates from ACME: issue when missing, renew at 2/3 of life.

HTTP-01 is answered on the public port (`vcdn.acme_http.middleware` on the edge app), so
no other listener is needed. A new pair is written over `tls_cert`/`tls_key` by rename
and put into service at once (`on_issued`, a `vcdn.tls_io.CertWatch` reload): new
handshakes get it, open connections keep theirs. A renewal that fails keeps the old
certificate in service, counts the failure, raises the alert gauge
``vcdn_appliance_acme_renewal_failing`` and tries again after `RETRY_SECONDS` (doubling,
never past the check interval).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from appliance.settings import ApplianceSettings
from vcdn.acme_client import obtain, renew_at, validity
from vcdn.acme_http import Challenges
from vcdn.certcli import write_pair
from vcdn.errors import UpstreamError
from vcdn.logs import event

log = logging.getLogger("vcdn.appliance.acme")
RETRY_SECONDS: Final = 30.0


class Renewer:
    def __init__(self, s: ApplianceSettings, challenges: Challenges,
                 on_issued: Callable[[], object], registry: CollectorRegistry) -> None:
        assert s.tls_cert is not None and s.tls_key is not None
        self.settings = s
        self.challenges = challenges
        self.on_issued = on_issued
        self.issued = Counter("vcdn_appliance_acme_certificates",
                              "Certificates obtained from the ACME server.", registry=registry)
        self.failures = Counter("vcdn_appliance_acme_renewal_failures",
                                "ACME issuances or renewals that failed (the old certificate "
                                "stays in service).", registry=registry)
        self.failing = Gauge("vcdn_appliance_acme_renewal_failing",
                             "1 while the last ACME attempt failed: alert on it.",
                             registry=registry)
        self.expiry = Gauge("vcdn_appliance_tls_not_after_seconds",
                            "Expiry (Unix time) of the certificate in service.",
                            registry=registry)
        self._retry = RETRY_SECONDS

    def due_in(self, now: dt.datetime | None = None) -> float:
        """Seconds until renewal is due (0: now, also when there is no readable certificate)."""
        now = now or dt.datetime.now(dt.UTC)
        try:
            not_before, not_after = validity(self.settings.tls_cert.read_bytes())  # type: ignore[union-attr]
        except (OSError, ValueError):
            return 0.0
        self.expiry.set(not_after.timestamp())
        return max(0.0, (renew_at(not_before, not_after, self.settings.acme_renew_at)
                         - now).total_seconds())

    async def renew(self) -> bool:
        """One attempt; True when a new certificate went into service."""
        s = self.settings
        try:
            issued = await asyncio.to_thread(
                obtain, s.acme_directory, list(s.acme_domains), self.challenges,
                email=s.acme_email, account_key=s.cache_dir / "acme" / "account.json",
                ca_bundle=s.ca_bundle)
            await asyncio.to_thread(write_pair, issued, s.tls_cert, s.tls_key)  # type: ignore[arg-type]
        except (UpstreamError, OSError) as exc:
            self.failures.inc()
            self.failing.set(1)
            event(log, "acme_failed", logging.ERROR, error=str(exc),
                  retry_in=self._retry, domains=list(s.acme_domains))
            return False
        self.issued.inc()
        self.failing.set(0)
        self._retry = RETRY_SECONDS
        _, not_after = validity(issued.fullchain_pem)
        self.expiry.set(not_after.timestamp())
        event(log, "acme_issued", domains=list(s.acme_domains), not_after=not_after.isoformat())
        self.on_issued()
        return True

    async def run(self) -> None:
        """Until cancelled: sleep until due (at most the check interval), renew."""
        s = self.settings
        while True:
            wait = min(self.due_in(), s.acme_check_interval)
            await asyncio.sleep(wait)
            if self.due_in() > 0:
                continue
            if not await self.renew():
                await asyncio.sleep(self._retry)
                self._retry = min(self._retry * 2, s.acme_check_interval)
