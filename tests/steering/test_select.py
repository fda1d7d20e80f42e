"""The mapping policy: client address (+ title) → ranked appliances."""

from __future__ import annotations

from typing import Any

import pytest

from steering.geo import Geo
from steering.select import Client, Policy, distance_km, select
from steering.view import build_view
from tests.steering.conftest import ASN, CITY
from tests.steering.fakes import appliance
from vcdn.hashing import rank
from vcdn.schemas import ApplianceView, decode


@pytest.fixture(scope="module")
def geo() -> Geo:
    return Geo(CITY, ASN)


def view_of(*items: dict[str, Any]):  # type: ignore[no-untyped-def]
    return build_view([decode(ApplianceView, a) for a in items])


LON = appliance("lon-1", "lon", "http://127.0.3.1", lat=51.5, lon=-0.1)
SEA = appliance("sea-1", "sea", "http://127.0.4.1", lat=47.6, lon=-122.3)
STO = appliance("sto-1", "sto", "http://127.0.2.1", asn=29518, lat=59.3, lon=18.1)
ISP = appliance("isp-1", "isp", "http://127.0.1.1", lat=0.0, lon=0.0,
                prefixes=["89.160.20.0/24"])


def sites(client: str, view: Any, geo: Geo, **kw: Any) -> tuple[str, str]:
    d = select(Client.of(client), view, geo, Policy(**kw))
    return d.reason, d.sites[0]


def test_prefix_beats_asn_beats_geography(geo: Geo) -> None:
    # 89.160.20.112 is in ASN 29518 and located in Linköping (MaxMind test data).
    assert sites("89.160.20.112", view_of(LON, SEA, STO, ISP), geo) == ("prefix", "isp")
    assert sites("89.160.20.112", view_of(LON, SEA, STO), geo) == ("asn", "sto")
    assert sites("89.160.20.112", view_of(LON, SEA), geo) == ("geo", "lon")


@pytest.mark.parametrize(("ip", "site"), [("81.2.69.142", "lon"), ("216.160.83.56", "sea"),
                                          ("2.125.160.216", "lon")])
def test_geography_picks_the_nearest_site(geo: Geo, ip: str, site: str) -> None:
    assert sites(ip, view_of(LON, SEA), geo) == ("geo", site)


def test_unplaceable_client_goes_to_the_default_site(geo: Geo) -> None:
    assert sites("10.0.0.1", view_of(LON, SEA), geo, default_site="sea") == ("default", "sea")


@pytest.mark.parametrize("state", ["stale", "draining", "down"])
def test_unhealthy_appliances_are_never_chosen(geo: Geo, state: str) -> None:
    sick = appliance("isp-1", "isp", "http://127.0.1.1", prefixes=["89.160.20.0/24"],
                     state=state)
    d = select(Client.of("89.160.20.112"), view_of(LON, STO, sick), geo)
    assert "isp-1" not in [n.id for n in d.nodes]
    assert d.reason == "asn"


def test_next_sites_follow_nearest_to_the_chosen_site_first(geo: Geo) -> None:
    """After the chosen site, the others by distance from it (ISP at 0°N 0°E: London
    5,700 km, Stockholm 6,800 km, Seattle 12,000 km), whatever order the view lists them."""
    d = select(Client.of("89.160.20.112"), view_of(SEA, LON, STO, ISP), geo)
    assert d.sites == ("isp", "lon", "sto", "sea")
    assert distance_km(0.0, 0.0, 51.5, -0.1) < distance_km(0.0, 0.0, 59.3, 18.1) < distance_km(
        0.0, 0.0, 47.6, -122.3)
    d2 = select(Client.of("89.160.20.112"), view_of(SEA, LON, STO), geo)
    assert d2.sites == ("sto", "lon", "sea")


def test_within_a_site_titles_follow_rendezvous_rank(geo: Geo) -> None:
    nodes = [appliance(f"lon-{i}", "lon", f"http://127.0.3.{i}", lat=51.5, lon=-0.1)
             for i in range(1, 6)]
    v = view_of(*nodes)
    for title in ("bbb", "sintel", "tears", "elephants"):
        d = select(Client.of("81.2.69.142"), v, geo, title=title)
        assert [n.id for n in d.nodes] == rank(title, [f"lon-{i}" for i in range(1, 6)])


def test_dispersion_spreads_a_title_over_its_top_appliances(geo: Geo) -> None:
    nodes = [appliance(f"lon-{i}", "lon", f"http://127.0.3.{i}", lat=51.5, lon=-0.1)
             for i in range(1, 6)]
    v = view_of(*nodes)
    top2 = set(rank("bbb", [f"lon-{i}" for i in range(1, 6)])[:2])
    firsts = {select(Client.of(f"81.2.{i}.1"), v, geo, Policy(dispersion=2),
                     title="bbb").nodes[0].id for i in range(64)}
    assert firsts == top2
    one = {select(Client.of(f"81.2.{i}.1"), v, geo, title="bbb").nodes[0].id
           for i in range(64)}
    assert len(one) == 1


def test_saturated_site_sheds_a_share_of_clients_that_grows_with_load(geo: Geo) -> None:
    def shed_share(rps: float) -> float:
        busy = appliance("lon-1", "lon", "http://127.0.3.1", lat=51.5, lon=-0.1, rps=rps)
        v = view_of(busy, SEA, STO)
        clients = [Client.of(f"81.{i}.{j}.0", 24) for i in range(8) for j in range(32)]
        moved = sum(select(c, v, None, Policy(default_site="lon")).sites[0] != "lon"
                    for c in clients)
        return moved / len(clients)

    # Capacity 20000 req/s, saturation 0.8: idle keeps all, 90% sheds about half, full all.
    assert shed_share(1000) == 0.0
    assert 0.3 < shed_share(18000) < 0.7
    assert shed_share(25000) == 1.0


def test_saturated_appliance_goes_last_in_its_site(geo: Geo) -> None:
    a = appliance("lon-1", "lon", "http://127.0.3.1", lat=51.5, lon=-0.1, rps=19000)
    b = appliance("lon-2", "lon", "http://127.0.3.2", lat=51.5, lon=-0.1)
    for title in ("t1", "t2", "t3", "t4"):
        d = select(Client.of("81.2.69.142"), view_of(a, b), geo, title=title)
        assert [n.id for n in d.nodes if n.site == "lon"][-1] == "lon-1"


def test_dns_ranking_weighs_by_spare_capacity(geo: Geo) -> None:
    a = appliance("lon-1", "lon", "http://127.0.3.1", lat=51.5, lon=-0.1, rps=12000)
    b = appliance("lon-2", "lon", "http://127.0.3.2", lat=51.5, lon=-0.1)
    v = view_of(a, b)
    firsts = [select(Client.of(f"81.{i}.{j}.0", 24), v, None).nodes[0].id
              for i in range(4) for j in range(64)]
    # Weights 0.4 vs 1.0: the idle appliance is first for most clients, not all.
    assert 0.6 < firsts.count("lon-2") / len(firsts) < 0.9


def test_scope_reports_what_the_decision_depended_on(geo: Geo) -> None:
    v = view_of(LON, SEA, STO, ISP)
    assert select(Client.of("89.160.20.0", 24), v, geo).scope == 24  # the /24 prefix
    # ASN 29518 covers 89.160.0.0/17 in the test ASN database; the /24 prefix lies inside
    # that /17 too, so the scope is where the client parts from that prefix.
    d = select(Client.of("89.160.99.0", 24), v, geo)
    assert d.reason == "asn" and 17 <= d.scope <= 24
    assert select(Client.of("89.160.99.0", 0), v, geo).scope == 0


def test_empty_view_returns_no_appliance(geo: Geo) -> None:
    d = select(Client.of("81.2.69.142"), view_of(), geo)
    assert d.nodes == () and d.sites == ()


def test_great_circle_distance_london_to_seattle() -> None:
    assert 7600 < distance_km(51.5, -0.1, 47.6, -122.3) < 7800
    assert distance_km(0, 179.9, 0, -179.9) < 30  # across the antimeridian


def test_stale_appliances_are_a_last_resort_only_when_nothing_is_healthy(geo: Geo) -> None:
    stale = appliance("lon-1", "lon", "http://127.0.3.1", lat=51.5, lon=-0.1, state="stale")
    down = appliance("sea-1", "sea", "http://127.0.4.1", lat=47.6, lon=-122.3, state="down")
    d = select(Client.of("216.160.83.56"), view_of(stale, down), geo)
    assert [n.id for n in d.nodes] == ["lon-1"]
    d = select(Client.of("216.160.83.56"), view_of(stale, down, STO), geo)
    assert [n.id for n in d.nodes] == ["sto-1"]


def test_databases_built_by_the_tests_steer_to_the_expected_sites(tmp_path: Any) -> None:
    from tests.steering.test_geo import build_asn_db, build_city_db

    city = build_city_db(tmp_path / "city.mmdb", {"198.51.100.0/24": (35.68, 139.69),
                                                  "192.0.2.0/24": (-33.87, 151.21),
                                                  "2001:db8:7::/48": (51.5, -0.1)})
    asn = build_asn_db(tmp_path / "asn.mmdb", {"203.0.113.0/25": 64511})
    g = Geo(city, asn)
    v = view_of(
        appliance("tyo-1", "tyo", "http://127.0.5.1", lat=35.6, lon=139.7),
        appliance("syd-1", "syd", "http://127.0.6.1", lat=-33.9, lon=151.2),
        appliance("lon-1", "lon", "http://127.0.3.1", lat=51.5, lon=-0.1),
        appliance("isp-1", "isp", "http://127.0.1.1", asn=64511, lat=0.0, lon=0.0),
    )
    assert sites("198.51.100.7", v, g) == ("geo", "tyo")
    assert sites("192.0.2.200", v, g) == ("geo", "syd")
    assert sites("2001:db8:7::99", v, g) == ("geo", "lon")
    assert sites("203.0.113.9", v, g) == ("asn", "isp")
    assert sites("203.0.113.200", v, g, default_site="lon") == ("default", "lon")
    # The scope never claims more than the database network the answer came from.
    assert select(Client.of("198.51.100.0", 24), v, g, depth=1).scope == 24
