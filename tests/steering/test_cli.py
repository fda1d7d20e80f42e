"""`vcdn steering` start-up errors are one actionable line, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.steering.conftest import ASN, GEOIP, KEYS
from vcdn.cli import main as vcdn_main

BASE = ["--control", "http://127.0.0.1:9", "--zone", "cdn.example.", "--dns-port", "0",
        "--http-port", "0"]


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("VCDN_")}
    full.update(env if env is not None else {"VCDN_SIGNING_KEYS": KEYS})
    return subprocess.run([sys.executable, "-m", "vcdn.cli", "steering", *args], cwd=ROOT,
                          env=full, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("why", "args", "env", "message"),
    [
        ("no signing keys", BASE, {}, "signing_keys' is required"),
        ("weak signing key", BASE, {"VCDN_SIGNING_KEYS": "k1:short"}, "at least 16"),
        ("missing city db", [*BASE, "--geoip-city", "/nonexistent/city.mmdb"], None,
         "does not exist"),
        ("broken city db", [*BASE, "--geoip-city",
                            str(GEOIP / "GeoIP2-City-Test-Broken-Double-Format.mmdb")], None,
         "not a valid MaxMind DB"),
        ("asn db as city db", [*BASE, "--geoip-city", str(ASN)], None, "expected a City"),
        ("bad zone", ["--control", "http://x", "--zone", "a b"], None, "zone"),
        ("control not a URL", ["--control", "ftp://x", "--zone", "cdn.example."], None,
         "http(s) URL"),
        ("answers out of range", [*BASE, "--answers", "0"], None, "'answers'"),
        ("no workers", [*BASE, "--workers", "0"], None, "--workers must be at least 1"),
        ("bad trusted proxy", BASE, {"VCDN_SIGNING_KEYS": KEYS,
                                     "VCDN_TRUSTED_PROXIES": "10.0.0.0/8,nonsense"},
         "trusted_proxies"),
    ],
)
def test_bad_settings_fail_with_one_clear_line(
    why: str, args: list[str], env: dict[str, str] | None, message: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    for var in [k for k in os.environ if k.startswith("VCDN_")]:
        monkeypatch.delenv(var)
    for var, value in (env if env is not None else {"VCDN_SIGNING_KEYS": KEYS}).items():
        monkeypatch.setenv(var, value)
    assert vcdn_main(["steering", *args]) == 1, why
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, (why, err)


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        r = run(["--control", "http://127.0.0.1:9", "--zone", "cdn.example.",
                 "--dns-port", str(port), "--http-port", "0"])
    assert r.returncode == 1 and "Cannot listen" in r.stderr and "Traceback" not in r.stderr


def test_settings_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VCDN_SIGNING_KEYS", KEYS)
    cfg = tmp_path / "steering.toml"
    cfg.write_text('control = "http://127.0.0.1:9"\nzone = "cdn.example."\nanswers = 99\n')
    assert vcdn_main(["steering", "--config", str(cfg)]) == 1
    assert "'answers'" in capsys.readouterr().err


def test_help_names_the_secret_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        vcdn_main(["steering", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "VCDN_SIGNING_KEYS" in out and "--dns-port" in out


def test_control_replicas_from_repeated_flags_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from steering.cli import control_override, parse_args

    args = parse_args(["--control", "http://c1:8090", "--control", "http://c2:8090"])
    assert control_override(args.control) == "http://c1:8090,http://c2:8090"
    monkeypatch.delenv("VCDN_CONTROL_URLS", raising=False)
    assert control_override(None) is None
    monkeypatch.setenv("VCDN_CONTROL_URLS", "http://c3:8090,http://c4:8090")
    assert control_override(None) == "http://c3:8090,http://c4:8090"
