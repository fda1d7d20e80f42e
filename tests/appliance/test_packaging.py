"""The operator files in packaging/: the example settings load and document every
setting; the systemd unit passes `systemd-analyze verify`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from appliance import settings as settings_mod
from appliance.settings import ApplianceSettings
from edge.settings import EdgeTuning
from tests.appliance.conftest import ADMIN_TOKEN, APPLIANCE_TOKEN, ROOT, SIGNING_KEYS
from tests.conftest import require_tool
from vcdn.settings import read_toml, setting_names

EXAMPLE = ROOT / "packaging" / "appliance.toml"
UNIT = ROOT / "packaging" / "vcdn-appliance.service"


def test_example_settings_load_once_secrets_exist(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("/etc/vcdn/", f"{tmp_path}/").replace(
        "/var/cache/vcdn", str(tmp_path / "cache"))
    (tmp_path / "control.token").write_text(APPLIANCE_TOKEN)
    (tmp_path / "operator.token").write_text(ADMIN_TOKEN)
    (tmp_path / "signing.keys").write_text(SIGNING_KEYS)
    config = tmp_path / "appliance.toml"
    config.write_text(text)
    s = settings_mod.load(config, env={})
    assert s.control_token == APPLIANCE_TOKEN and s.operator_token == ADMIN_TOKEN
    assert str(s.window) == "02:00-14:00" and s.fill_bandwidth == 50_000_000
    assert s.admin_host == "127.0.0.1"
    assert s.edge == EdgeTuning()  # the example's [edge] table shows the engine's defaults


def test_example_documents_every_setting() -> None:
    keys = set(read_toml(EXAMPLE))
    text = EXAMPLE.read_text()
    for name in setting_names(ApplianceSettings):  # [edge] ram_cache as edge_ram_cache
        inline_secret = name in ("control_token", "signing_keys", "operator_token")
        assert name in keys or (inline_secret and f"VCDN_{name.upper()}" in text), name


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text())
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)
    problems = [line for line in (done.stdout + done.stderr).splitlines()
                if line.strip() and "is not executable" not in line]
    assert problems == []
    assert "ExecStart=/usr/local/bin/vcdn appliance --config" in UNIT.read_text()
