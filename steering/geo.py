"""MaxMind readers (City and ASN), opened once at start-up.

A lookup answers the value *and* the length of the database network that holds the
address, because the DNS answer's ECS scope (RFC 7871 §7.2.1) must not claim more
precision than the data it was derived from. A missing or broken database stops start-up
with a `ConfigError` naming the file; a record that turns out to be corrupt at lookup time
counts as "not found" rather than failing the query.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import maxminddb
from maxminddb.errors import InvalidDatabaseError

from vcdn.errors import ConfigError
from vcdn.logs import event

log = logging.getLogger(__name__)

# Records decoded at open time to catch a corrupt data section before serving.
_PROBE_RECORDS: Final = 2000


@dataclass(frozen=True, slots=True)
class Location:
    lat: float
    lon: float


def _open(path: Path, kind: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"MaxMind {kind} database '{path}' does not exist.")
    try:
        # MODE_AUTO picks the C extension (libmaxminddb) when built: ~10x the pure reader.
        reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
        db_type = str(reader.metadata().database_type)
        for _ in itertools.islice(iter(reader), _PROBE_RECORDS):
            pass
    except (InvalidDatabaseError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"MaxMind {kind} database '{path}' is not a valid MaxMind DB file ({exc})."
        ) from None
    if kind.lower() not in db_type.lower():
        raise ConfigError(
            f"'{path}' is a {db_type} database; expected a {kind} database "
            f"(e.g. GeoLite2-{kind}.mmdb)."
        )
    return reader


class Geo:
    """City location and ASN of an address; either database may be absent."""

    __slots__ = ("_asn", "_city")

    def __init__(self, city: Path | str | None = None, asn: Path | str | None = None) -> None:
        self._city = _open(Path(city), "City") if city else None
        self._asn = _open(Path(asn), "ASN") if asn else None

    def location(self, ip: str) -> tuple[Location | None, int]:
        """(location or None, prefix length of the database network holding `ip`)."""
        if self._city is None:
            return None, 0
        record, plen = self._get(self._city, ip)
        loc = record.get("location") if isinstance(record, dict) else None
        if isinstance(loc, dict) and "latitude" in loc and "longitude" in loc:
            return Location(float(loc["latitude"]), float(loc["longitude"])), plen
        return None, plen

    def asn(self, ip: str) -> tuple[int, int]:
        """(autonomous system number or 0, prefix length of the database network)."""
        if self._asn is None:
            return 0, 0
        record, plen = self._get(self._asn, ip)
        number = record.get("autonomous_system_number") if isinstance(record, dict) else None
        return (number if isinstance(number, int) else 0), plen

    @staticmethod
    def _get(reader: Any, ip: str) -> tuple[Any, int]:
        try:
            record, plen = reader.get_with_prefix_len(ip)
        except (InvalidDatabaseError, ValueError) as exc:
            event(log, "geoip_bad_record", level=logging.WARNING, ip=ip, error=str(exc))
            # Unknown extent: claim the narrowest scope (callers cap it at the source length).
            return None, 128
        return record, int(plen)

    def close(self) -> None:
        for reader in (self._city, self._asn):
            if reader is not None:
                reader.close()
