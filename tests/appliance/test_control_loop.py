"""The control loop's decisions, with an in-process fake control plane and virtual sleep."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance import settings as settings_mod
from appliance.control_loop import ControlLoop, registration
from appliance.metrics import ApplianceMetrics
from appliance.state import Status
from tests.appliance.conftest import appliance_toml
from vcdn.errors import Forbidden, NotFound, UpstreamError
from vcdn.metrics import new_registry
from vcdn.schemas import EnrollmentView, Heartbeat, Registration


class FakeControl:
    """Answers from a script: each item is None (success) or an exception to raise."""

    def __init__(self, registers: list[Exception | None], beats: list[Exception | None]) -> None:
        self.registers, self.beats = registers, beats
        self.calls: list[str] = []

    async def register_appliance(self, registration: Registration) -> None:
        self.calls.append("register")
        outcome = self.registers.pop(0) if self.registers else None
        if outcome is not None:
            raise outcome

    async def heartbeat(self, appliance: str, heartbeat: Heartbeat) -> None:
        self.calls.append(f"beat:{heartbeat.state}")
        outcome = self.beats.pop(0) if self.beats else None
        if outcome is not None:
            raise outcome

    async def enrollment(self, appliance: str) -> EnrollmentView:
        """What the operator approved: BGP-learned prefixes outside it never register."""
        return EnrollmentView(appliance, "s1", list(APPROVED_HERE), "", 0.0, 0.0)


APPROVED_HERE = ("192.0.2.0/24", "198.51.100.0/24")


def make(tmp_path: Path, control: FakeControl, collect_fails: int = 0
         ) -> tuple[ControlLoop, list[float]]:
    path = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=8080, admin_port=8081,
        cache_dir=tmp_path / "c", control_url="http://127.0.0.1:1",
        origin_url="http://127.0.0.1:2", heartbeat_interval=10.0, prefixes=["192.0.2.0/24"],
    )
    settings = settings_mod.load(path, env={})
    slept: list[float] = []
    failures = [collect_fails]

    async def collect() -> Heartbeat:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("store exploded")
        return Heartbeat(state="healthy")

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    loop = ControlLoop(settings, control, Status("a1", "s1"),
                       ApplianceMetrics(new_registry()), collect, sleep=sleep)
    return loop, slept


async def drive(loop: ControlLoop, control: FakeControl, calls: int) -> None:
    task = asyncio.create_task(loop.run())
    try:
        async with asyncio.timeout(5):
            while len(control.calls) < calls:
                loop.beat_now()
                await asyncio.sleep(0.001)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_registration_carries_the_settings(tmp_path: Path) -> None:
    loop, _ = make(tmp_path, FakeControl([], []))
    reg = registration(loop.settings)
    assert (reg.id, reg.site, reg.public_url, reg.prefixes) == (
        "a1", "s1", "http://127.0.0.1:8080", ["192.0.2.0/24"])
    assert reg.capacity_bytes == loop.settings.cache_capacity


async def test_outage_backs_off_then_registers_before_beating_again(tmp_path: Path) -> None:
    down = UpstreamError("refused")
    control = FakeControl([None, down, down, None], [None, down])
    loop, slept = make(tmp_path, control)
    await drive(loop, control, 7)
    assert control.calls[:7] == ["register", "beat:healthy", "beat:healthy", "register",
                                 "register", "register", "beat:healthy"]
    assert len(slept) == 3 and slept[1] > slept[0] * 0.5 and max(slept) <= 60.0


async def test_404_registers_at_once_and_403_keeps_registration(tmp_path: Path) -> None:
    control = FakeControl([], [NotFound("who?"), Forbidden("no"), None])
    loop, slept = make(tmp_path, control)
    await drive(loop, control, 5)
    assert control.calls[:5] == ["register", "beat:healthy", "register", "beat:healthy",
                                 "beat:healthy"]
    assert len(slept) == 1  # only the 403 backed off; the 404 re-registered immediately


async def test_a_failing_heartbeat_builder_does_not_stop_the_loop(tmp_path: Path) -> None:
    control = FakeControl([], [])
    loop, slept = make(tmp_path, control, collect_fails=2)
    await drive(loop, control, 2)
    assert control.calls[:2] == ["register", "beat:healthy"]
    assert len(slept) == 2 and loop.status.control_ok


async def test_prefixes_changing_during_a_registration_are_registered_too(tmp_path: Path) -> None:
    """BGP may learn more while a registration is in flight: that one is not the last."""
    learned: list[str] = []
    sent: list[list[str]] = []

    class Racing(FakeControl):
        async def register_appliance(self, registration: Registration) -> None:
            sent.append(list(registration.prefixes))
            await super().register_appliance(registration)
            if len(sent) == 1:
                learned.append("198.51.100.0/24")
                loop.reregister()  # arrives before this registration's answer is handled

    control = Racing([], [])
    loop, _ = make(tmp_path, control)
    loop.learned = lambda: tuple(learned)
    await drive(loop, control, 4)
    assert sent[:2] == [["192.0.2.0/24"], ["192.0.2.0/24", "198.51.100.0/24"]]


async def test_bgp_prefixes_outside_the_enrolment_are_dropped_before_registering(
    tmp_path: Path,
) -> None:
    """Issue 11, finding 6: the router announces a default route and another network's
    prefix; neither may reach the control plane (it would refuse the whole registration)."""
    sent: list[list[str]] = []

    class Recording(FakeControl):
        async def register_appliance(self, registration: Registration) -> None:
            sent.append(list(registration.prefixes))
            await super().register_appliance(registration)

    control = Recording([], [])
    loop, _ = make(tmp_path, control)
    loop.learned = lambda: ("0.0.0.0/0", "198.51.100.0/25", "203.0.113.0/24", "::/0")
    await drive(loop, control, 2)
    assert sent[0] == ["192.0.2.0/24", "198.51.100.0/25"]
