"""Signing keys of the real `vcdn steering` process: SIGHUP and a changed keys file put
new keys into service without a restart; a key before its not_before does not sign."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.steering.conftest import SteeringProc, standard_appliances, start_steering, stop_steering
from tests.steering.fakes import FakeControl

pytestmark = pytest.mark.slow


def _signing_key(sp: SteeringProc) -> str:
    """The key id of the token in a playback answer."""
    with urllib.request.urlopen(f"{sp.http}/v1/playback/movie", timeout=5) as r:
        body = json.loads(r.read())
    url = next(u for u in body["urls"] if "/s/" in u)
    return url.split("/s/", 1)[1].split(".", 1)[0]


def _until(sp: SteeringProc, want: str, within: float) -> str:
    deadline = time.monotonic() + within
    while True:
        got = _signing_key(sp)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


@pytest.fixture
def control() -> Iterator[FakeControl]:
    fake = FakeControl().start()
    fake.appliances = standard_appliances()
    fake.titles.add("movie")
    yield fake
    fake.stop()


def test_sighup_and_a_changed_keys_file_switch_the_signing_key(
    control: FakeControl, tmp_path: Path
) -> None:
    """k1 signs; the keys file gains k2 (listed first) and SIGHUP makes k2 sign; a k3 whose
    not_before is an hour away, written without a signal, is loaded but does not sign."""
    keys = tmp_path / "signing.keys"
    keys.write_text("k1:steering-test-secret-0001\n")
    config = tmp_path / "steering.toml"
    config.write_text(f'signing_keys_file = "{keys}"\n')
    sp = start_steering(control.url, "--config", str(config), "--workers", "1",
                        env={"VCDN_SIGNING_KEYS": ""})
    try:
        assert _signing_key(sp) == "k1"
        keys.write_text("k2:steering-test-secret-0002\nk1:steering-test-secret-0001\n")
        sp.proc.send_signal(signal.SIGHUP)
        assert _until(sp, "k2", 10) == "k2"
        later = int(time.time()) + 3600
        keys.write_text(
            f"k3:steering-test-secret-0003;not_before={later}\n"
            "k2:steering-test-secret-0002\n"
        )
        time.sleep(5)  # two polls of the file
        assert _signing_key(sp) == "k2"
        assert sp.proc.poll() is None  # the same process throughout
    finally:
        stop_steering(sp)
