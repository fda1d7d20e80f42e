"""docs/control.md: heartbeats are written behind, "a crash loses at most 100 ms of beats".
Checked with a real `vcdn control` on SQLite killed with SIGKILL while an appliance beats:
after a restart, every beat acknowledged more than the flush delay before the kill (plus
scheduling slack on a loaded 2-core machine) is stored."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from origin.control.settings import ControlSettings
from tests.origin.control.conftest import BOOTSTRAP, OPERATOR, TOKENS, registration
from tests.origin.control.server import start_control

pytestmark = pytest.mark.slow
#: Time for the flusher to be scheduled and commit on a busy machine, beyond the delay.
SLACK = 0.4


def test_a_crash_loses_only_the_last_flush_delay_of_heartbeats(tmp_path: Path) -> None:
    delay = ControlSettings.heartbeat_flush_delay
    assert delay == 0.1  # the figure docs/control.md quotes
    db = f"sqlite:///{tmp_path}/c.db"
    server = start_control(db, BOOTSTRAP, tmp_path)
    op = {"Authorization": f"Bearer {OPERATOR}"}
    me = {"Authorization": f"Bearer {TOKENS['a1']}"}
    with requests.Session() as s:
        r = s.post(f"{server.url}/api/v1/enrollments", json={"id": "a1", "site": "s1"},
                   headers=op, timeout=10)
        assert r.status_code == 201, r.text
        r = s.post(f"{server.url}/api/v1/appliances", json=registration("a1"), headers=me,
                   timeout=10)
        assert r.status_code in (200, 201), r.text
        acked: list[tuple[float, float]] = []  # (sent, acknowledged), wall clock
        deadline = time.time() + 1.5
        while time.time() < deadline:
            sent = time.time()
            r = s.put(f"{server.url}/api/v1/appliances/a1/heartbeat",
                      json={"state": "healthy"}, headers=me, timeout=10)
            assert r.status_code == 200, r.text
            acked.append((sent, time.time()))
            time.sleep(0.01)
    server.proc.kill()  # SIGKILL: no final flush
    killed = time.time()
    server.proc.wait()
    server.log.close()
    must_have = [sent for sent, ack in acked if ack < killed - delay - SLACK]
    assert len(must_have) >= 5, "too few beats before the kill to judge"

    again = start_control(db, BOOTSTRAP, tmp_path)
    try:
        r = requests.get(f"{again.url}/api/v1/appliances", headers=op, timeout=10)
        (view,) = [a for a in r.json()["appliances"] if a["id"] == "a1"]
        # The server stamps a beat between its sending and its acknowledgement.
        assert view["last_heartbeat"] is not None, "every beat was lost"
        assert view["last_heartbeat"] >= max(must_have), (
            f"last stored beat at {view['last_heartbeat']:.3f}, but one acknowledged at "
            f"{max(must_have):.3f} ({killed - max(must_have):.3f} s before the kill) is lost")
    finally:
        again.stop()
