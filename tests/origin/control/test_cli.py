"""`vcdn control` as a real process: tokens, start-up errors, clean stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from origin.control.auth import hash_token
from tests.conftest import ROOT
from tests.origin.control.conftest import BOOTSTRAP
from tests.origin.control.server import start_control


def vcdn(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "vcdn.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=full_env,
        cwd=cwd or ROOT,
    )


def test_token_create_prints_a_token_once_that_the_server_accepts(
    db_url: str, tmp_path: Path
) -> None:
    done = vcdn("control", "token", "create", "--role", "steering", "--db", db_url, "--label", "t")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("vcdn_") and len(token) > 40
    assert "shown only this once" in done.stderr
    server = start_control(db_url, "", tmp_path)
    try:
        url = f"{server.url}/api/v1/appliances"
        ok = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert ok.status_code == 200 and ok.json()["appliances"] == []
        other = requests.get(
            url, headers={"Authorization": "Bearer vcdn_not-a-real-token"}, timeout=10
        )
        assert other.status_code == 401
        # The database holds the hash, never the token.
        assert requests.get(f"{server.url}/healthz", timeout=10).json()["status"] == "ok"
    finally:
        assert server.stop() == 0
    if db_url.startswith("sqlite:///"):
        assert token.encode() not in Path(db_url[len("sqlite:///") :]).read_bytes()


def test_sigterm_stops_the_server_cleanly_with_json_logs(tmp_path: Path) -> None:
    server = start_control(f"sqlite:///{tmp_path}/c.db", BOOTSTRAP, tmp_path)
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    assert server.stop() == 0
    events = [
        json.loads(line)["event"] for line in (tmp_path / "control.stderr").read_text().splitlines()
    ]
    assert events[-2:] == ["stopping", "stopped"]
    assert "listening" in events


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--db", "mysql://x/y"], {}, "is not supported"),
        (["--db", "sqlite:///"], {}, "sqlite:///PATH"),
        (["--db", "postgresql://postgres@127.0.0.1:1/test"], {}, "Cannot connect to PostgreSQL"),
        ([], {"VCDN_CONTROL_PORT": "eighty"}, "Setting 'port'"),
        ([], {"VCDN_CONTROL_TOKENS": "operator"}, "role:token"),
        ([], {"VCDN_CONTROL_TOKENS": "wizard:0123456789abcdef"}, "Unknown role 'wizard'"),
        (["--config", "missing.toml"], {}, "does not exist"),
        ([], {"VCDN_CONTROL_HEARTBEAT_INTERVAL": "0"}, "'heartbeat_interval' must be positive"),
        ([], {"VCDN_CONTROL_STALE_AFTER_BEATS": "50"}, "stale_after_beats"),
        ([], {"VCDN_CONTROL_MAX_BODY": "10"}, "'max_body' must be at least"),
    ],
)
def test_bad_start_up_settings_are_one_line_errors(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    port = [] if "VCDN_CONTROL_PORT" in env else ["--port", "0"]
    done = vcdn("control", *port, *args, env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_tokens_are_listed_by_hash_and_revoked_by_id(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/c.db"
    unbound = vcdn("control", "token", "create", "--role", "appliance", "--db", db)
    assert unbound.returncode != 0 and "--appliance ID" in unbound.stderr
    assert "Traceback" not in unbound.stderr
    stranger = vcdn("control", "token", "create", "--role", "appliance", "--appliance", "a1",
                    "--db", db)
    assert stranger.returncode != 0 and "not enrolled" in stranger.stderr
    enrolled = vcdn("control", "appliance", "enroll", "--id", "a1", "--site", "s1",
                    "--prefix", "10.1.0.0/16", "--label", "enrolment", "--db", db)
    assert enrolled.returncode == 0 and enrolled.stdout.startswith("vcdn_"), enrolled.stderr
    made = vcdn(
        "control",
        "token",
        "create",
        "--role",
        "appliance",
        "--appliance",
        "a1",
        "--label",
        "box one",
        "--db",
        db,
    )
    token = made.stdout.strip()
    listing = vcdn("control", "token", "list", "--db", db)
    assert listing.returncode == 0
    [row] = [r for r in listing.stdout.splitlines()[1:] if r.endswith("box one")]
    token_id = row.split()[0]
    assert row.split()[1:3] == ["appliance", "a1"] and row.endswith("box one")
    assert token not in listing.stdout and hash_token(token).startswith(token_id)
    assert vcdn("control", "token", "revoke", "0000", "--db", db).returncode == 1
    assert "No token" in vcdn("control", "token", "revoke", "00000000", "--db", db).stderr
    revoked = vcdn("control", "token", "revoke", token_id, "--db", db)
    assert revoked.returncode == 0 and "Revoked the appliance token" in revoked.stderr
    left = vcdn("control", "token", "list", "--db", db).stdout.splitlines()[1:]
    assert [r.split()[-1] for r in left] == ["enrolment"]  # the enrolment's own token stays
    assert vcdn("control", "token", "frobnicate").returncode == 2


def test_token_create_refuses_a_binding_for_a_non_appliance_role(tmp_path: Path) -> None:
    done = vcdn(
        "control",
        "token",
        "create",
        "--role",
        "operator",
        "--appliance",
        "a1",
        "--db",
        f"sqlite:///{tmp_path}/c.db",
    )
    assert done.returncode == 1 and "--appliance" in done.stderr
    done = vcdn(
        "control", "token", "create", "--role", "king", "--db", f"sqlite:///{tmp_path}/c.db"
    )
    assert done.returncode == 2 and "invalid choice" in done.stderr
