"""Appliance settings: every bad or missing value stops start-up naming the key; secrets
never come from flags; *_file secrets and the environment work."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import settings as settings_mod
from appliance.cli import main as cli_main
from tests.appliance.conftest import APPLIANCE_TOKEN, appliance_toml
from vcdn.errors import ConfigError


def base(tmp_path: Path, **extra: object) -> Path:
    values: dict[str, object] = {
        "id": "a1", "site": "s1", "port": 8080, "admin_port": 8081,
        "cache_dir": tmp_path / "cache", "control_url": "http://127.0.0.1:8090",
        "origin_url": "http://127.0.0.1:8000", **extra,
    }
    return appliance_toml(tmp_path / "a.toml", **values)  # type: ignore[arg-type]


def test_a_complete_file_loads_with_sizes_and_window(tmp_path: Path) -> None:
    s = settings_mod.load(base(tmp_path, cache_capacity="2GiB", fill_bandwidth="10MB",
                               prefixes=["192.0.2.0/24", "2001:db8::/32"]), env={})
    assert s.cache_capacity == 2 * 1024**3 and s.fill_bandwidth == 10_000_000
    assert s.prefixes == ("192.0.2.0/24", "2001:db8::/32")
    assert str(s.window) == "always" and s.admin_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"id": "bad id"}, "'id'"),
        ({"site": ""}, "'site'"),
        ({"public_url": "ftp://x"}, "'public_url'"),
        ({"control_url": "nope"}, "'control_url'"),
        ({"control_url": "http://c1:8090,ftp://c2"}, "'control_url'"),
        ({"origin_url": "http://"}, "'origin_url'"),
        ({"port": 70000}, "'port'"),
        ({"lat": 91.0}, "'lat'"),
        ({"lon": -181.0}, "'lon'"),
        ({"asn": -1}, "'asn'"),
        ({"prefixes": ["10.0.0.0/33"]}, "'prefixes'"),
        ({"cache_capacity": "lots"}, "'cache_capacity'"),
        ({"cache_capacity": "0"}, "'cache_capacity'"),
        ({"fill_window": "2am-2pm"}, "'fill_window'"),
        ({"fill_concurrency": 0}, "'fill_concurrency'"),
        ({"heartbeat_interval": 0}, "'heartbeat_interval'"),
        ({"control_token": "short"}, "'control_token'"),
        ({"operator_token": "short"}, "'operator_token'"),
        ({"signing_keys": "nocolon"}, "'signing_keys'"),
        ({"signing_keys": ""}, "'signing_keys'"),
        ({"auth": "maybe"}, "'auth'"),
        ({"peers": ["not-a-url"]}, "'peers'"),
        ({"no_such_setting": 1}, "'no_such_setting'"),
        ({"bgp_neighbor": "router"}, "'bgp_neighbor'"),
        ({"bgp_neighbor": "192.0.2.1", "bgp_peer_as": 1}, "'bgp_local_address'"),
        ({"bgp_neighbor": "192.0.2.1", "bgp_local_address": "192.0.2.2"}, "'bgp_peer_as'"),
        ({"bgp_neighbor": "2001:db8::1", "bgp_local_address": "2001:db8::2", "bgp_peer_as": 1},
         "'bgp_router_id'"),
        ({"bgp_neighbor": "192.0.2.1", "bgp_local_address": "192.0.2.2", "bgp_peer_as": 1,
          "asn": 0}, "'bgp_local_as'"),
        ({"bgp_neighbor": "192.0.2.1", "bgp_local_address": "192.0.2.2", "bgp_peer_as": 1,
          "asn": 5, "bgp_port": 0}, "'bgp_port'"),
        ({"tls_port": 8443}, "'tls_port' needs 'tls_cert'"),
        ({"tls_port": 8081, "tls_cert": "c.pem", "tls_key": "k.pem"}, "'tls_port'"),
        ({"tls_port": 70000, "tls_cert": "c.pem", "tls_key": "k.pem"}, "'tls_port'"),
    ],
)
def test_bad_setting_is_a_config_error_naming_the_key(
    tmp_path: Path, extra: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError, match=key):
        settings_mod.load(base(tmp_path, **extra), env={})


def test_the_https_url_is_the_public_host_on_tls_port(tmp_path: Path) -> None:
    s = settings_mod.load(base(tmp_path, tls_port=8443, tls_cert="c.pem", tls_key="k.pem",
                               public_url="http://cache1.isp.example:8080"), env={})
    assert s.tls_url == "https://cache1.isp.example:8443"
    s = settings_mod.load(base(tmp_path, tls_port=8443, tls_cert="c.pem", tls_key="k.pem",
                               public_url="http://[2001:db8::7]:8080"), env={})
    assert s.tls_url == "https://[2001:db8::7]:8443"
    s = settings_mod.load(base(tmp_path, tls_port=8443, tls_cert="c.pem", tls_key="k.pem",
                               tls_url="https://video.example"), env={})
    assert s.tls_url == "https://video.example"  # set explicitly (a terminator in front)


def test_missing_required_setting_names_it(tmp_path: Path) -> None:
    path = tmp_path / "a.toml"
    path.write_text('id = "a1"\nsite = "s1"\n')
    with pytest.raises(ConfigError, match="'public_url' is required"):
        settings_mod.load(path, env={})


def test_secrets_come_from_files_or_environment_never_flags(tmp_path: Path) -> None:
    (tmp_path / "control.token").write_text(APPLIANCE_TOKEN + "\n")
    path = base(tmp_path, control_token="", control_token_file="control.token",
                signing_keys="")
    s = settings_mod.load(path, env={"VCDN_SIGNING_KEYS": "k9:from-the-environment-123"})
    assert s.control_token == APPLIANCE_TOKEN
    assert list(s.keys) == ["k9"]
    with pytest.raises(ConfigError, match="secret"):
        settings_mod.load(path, {"control_token": "x" * 20}, env={})


def test_a_keys_file_holds_one_key_per_line(tmp_path: Path) -> None:
    """A rotation file lists the new key above the old one; both verify."""
    (tmp_path / "signing.keys").write_text(
        "k2:new-secret-0123456789;not_before=2027-01-01T00:00:00Z\n\nk1:old-secret-0123456789\n"
    )
    path = base(tmp_path, signing_keys="", signing_keys_file="signing.keys")
    keys = settings_mod.load(path, env={}).keys
    assert list(keys) == ["k2", "k1"]
    assert keys["k1"] == b"old-secret-0123456789"


def test_unreadable_token_file_is_named(tmp_path: Path) -> None:
    path = base(tmp_path, control_token="", control_token_file="missing.token")
    with pytest.raises(ConfigError, match="control_token_file"):
        settings_mod.load(path, env={})


def test_flags_override_the_file(tmp_path: Path) -> None:
    s = settings_mod.load(base(tmp_path), {"port": 9999, "fill_window": "01:00-02:00"}, env={})
    assert s.port == 9999 and str(s.window) == "01:00-02:00"


def test_cli_has_no_flag_for_a_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--config", str(base(tmp_path)), "--control-token", "x" * 20])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --control-token" in capsys.readouterr().err


def test_cli_reports_a_bad_file_as_one_line(tmp_path: Path) -> None:
    from vcdn.cli import main as vcdn_main

    path = tmp_path / "bad.toml"
    path.write_text("id = [unclosed\n")
    assert vcdn_main(["appliance", "--config", str(path)]) == 1


def test_control_replicas_from_flags_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.cli import _parser, control_override

    s = settings_mod.load(base(tmp_path, control_url="http://c1:8090, http://c2:8090"), env={})
    assert s.control_url == "http://c1:8090, http://c2:8090"
    args = _parser().parse_args(
        ["--config", "a.toml", "--control", "http://c1:8090", "--control", "http://c2:8090"]
    )
    assert control_override(args) == "http://c1:8090,http://c2:8090"
    monkeypatch.setenv("VCDN_CONTROL_URLS", "http://c3:8090,http://c4:8090")
    assert control_override(_parser().parse_args(["--config", "a.toml"])) == (
        "http://c3:8090,http://c4:8090"
    )
