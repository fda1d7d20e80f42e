"""MaxMind lookups: MaxMind's own test databases and databases built by the tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from steering.geo import Geo
from tests.steering.conftest import ASN, CITY, GEOIP
from vcdn.errors import ConfigError


@pytest.fixture(scope="module")
def geo() -> Geo:
    return Geo(CITY, ASN)


@pytest.mark.parametrize(
    ("ip", "lat", "lon"),
    [
        ("81.2.69.142", 51.5142, -0.0931),  # London
        ("89.160.20.112", 58.4167, 15.6167),  # Linköping
        ("216.160.83.56", 47.2513, -122.3149),  # Milton, WA
    ],
)
def test_city_database_locates_maxmind_test_addresses(geo: Geo, ip: str, lat: float,
                                                      lon: float) -> None:
    loc, plen = geo.location(ip)
    assert loc is not None
    assert (round(loc.lat, 2), round(loc.lon, 2)) == (round(lat, 2), round(lon, 2))
    assert 0 < plen <= 32


@pytest.mark.parametrize(("ip", "asn"), [("89.160.20.112", 29518), ("216.160.83.56", 209),
                                          ("1.128.0.0", 1221), ("2600:6000::", 237)])
def test_asn_database_answers_maxmind_test_numbers(geo: Geo, ip: str, asn: int) -> None:
    assert geo.asn(ip)[0] == asn


def test_unknown_address_has_no_location_and_a_prefix_length(geo: Geo) -> None:
    loc, plen = geo.location("127.0.0.1")
    assert loc is None and 0 < plen <= 32
    assert geo.asn("10.0.0.1")[0] == 0


def test_missing_database_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.mmdb' does not exist"):
        Geo(tmp_path / "nope.mmdb")


def test_non_mmdb_file_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "city.mmdb"
    bad.write_bytes(b"not a maxmind database" * 100)
    with pytest.raises(ConfigError, match="not a valid MaxMind DB"):
        Geo(bad)


def test_corrupt_data_section_is_caught_at_open() -> None:
    with pytest.raises(ConfigError, match="not a valid MaxMind DB"):
        Geo(GEOIP / "GeoIP2-City-Test-Broken-Double-Format.mmdb")


def test_asn_database_given_as_city_is_rejected() -> None:
    with pytest.raises(ConfigError, match="expected a City database"):
        Geo(city=ASN)


def build_city_db(path: Path, networks: dict[str, tuple[float, float]]) -> Path:
    """A GeoLite2-City-shaped database with a location per network."""
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City",
                   languages=["en"], description="vcdn steering test")
    for net, (lat, lon) in networks.items():
        w.insert_network(IPSet([net]), {"location": {"latitude": lat, "longitude": lon}})
    w.to_db_file(str(path))
    return path


def build_asn_db(path: Path, networks: dict[str, int]) -> Path:
    w = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN",
                   languages=["en"], description="vcdn steering test")
    for net, number in networks.items():
        w.insert_network(IPSet([net]), {"autonomous_system_number": number})
    w.to_db_file(str(path))
    return path


def test_databases_built_by_the_tests_answer_their_networks(tmp_path: Path) -> None:
    city = build_city_db(tmp_path / "city.mmdb", {"198.51.100.0/24": (35.68, 139.69),
                                                  "2001:db8:7::/48": (-33.87, 151.21)})
    asn = build_asn_db(tmp_path / "asn.mmdb", {"203.0.113.0/25": 64511})
    g = Geo(city, asn)
    loc, plen = g.location("198.51.100.77")
    assert loc is not None and round(loc.lat) == 36 and plen == 24
    loc6, plen6 = g.location("2001:db8:7::1")
    assert loc6 is not None and round(loc6.lon) == 151 and plen6 == 48
    assert g.asn("203.0.113.5") == (64511, 25)
    assert g.asn("203.0.113.200")[0] == 0
