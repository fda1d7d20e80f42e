"""`vcdn up` as a user runs it: a real process tree, a played title, a truthful summary,
and no process left behind however it is stopped."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from onebox.cluster import Cluster, ClusterConfig
from onebox.demo import wait_for_fleet
from onebox.up import parse_args
from tests.conftest import ROOT
from tests.e2e.conftest import TITLE, Packaged, seed_origin, start_cluster

pytestmark = pytest.mark.slow


def session_pids(sid: int) -> list[int]:
    """Every live process whose session id is `sid` (the tree `vcdn up` started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the ")" closing the command name: state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def start_up(data: Path, *extra: str) -> subprocess.Popen[str]:
    """`vcdn up` in its own session, as a terminal would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "vcdn.cli", "up", "--data", str(data), "--title", TITLE,
         "--appliances", "2", "--heartbeat-interval", "0.5", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )


def read_until(proc: subprocess.Popen[str], marker: str, within: float = 90.0) -> str:
    assert proc.stdout is not None
    out: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out.append(line)
        if marker in line:
            return "".join(out)
    proc.kill()
    raise AssertionError(f"no {marker!r} from vcdn up; it printed:\n{''.join(out)}")


def wait_gone(sid: int, within: float = 10.0) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        left = session_pids(sid)
        if not left:
            return []
        time.sleep(0.1)
    return session_pids(sid)


def test_up_plays_the_title_through_an_appliance_and_sigterm_stops_every_process(
    tmp_path: Path, packaged: Packaged
) -> None:
    seed_origin(tmp_path, packaged)
    summary_file = tmp_path / "summary.json"
    proc = start_up(tmp_path, "--json", str(summary_file))
    try:
        out = read_until(proc, "press Ctrl-C")
        children = session_pids(proc.pid)
        # control, origin, steering and two appliances, plus vcdn up itself
        assert len(children) >= 6, out
        assert f"title '{TITLE}' PLAYED through the CDN" in out
        data = json.loads(summary_file.read_text())
        play = data["play"]
        assert play["ok"] and play["ffmpeg_ok"] and not play["failed"]
        assert play["first_appliance"] in ("a1", "a2")
        assert set(play["by_appliance"]) <= {"a1", "a2"}  # never the origin
        media = [f for f in packaged.manifest.files if f.path.startswith(play["rendition"] + "/")]
        assert play["segments"] == len([f for f in media if not f.path.endswith(".m3u8")])
        served = {a["id"]: a for a in data["appliances"]}
        assert served[play["first_appliance"]]["sent_bytes"] >= play["bytes"]
        assert "status: NOERROR" in data["dns"] and "IN\tA\t127.0.0.1" in data["dns"]
        assert "/player?title=e2e" in data["pages"]["player"]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert wait_gone(proc.pid) == []
    assert "stopped" in (proc.stdout.read() if proc.stdout else "")


def test_ctrl_c_to_the_terminal_process_group_during_start_up_stops_everything(
    tmp_path: Path, packaged: Packaged
) -> None:
    seed_origin(tmp_path, packaged)
    proc = start_up(tmp_path)
    try:
        read_until(proc, "services up")
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        assert proc.wait(timeout=20) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert wait_gone(proc.pid) == []


def test_a_killed_vcdn_up_takes_its_services_with_it(tmp_path: Path, packaged: Packaged) -> None:
    seed_origin(tmp_path, packaged)
    proc = start_up(tmp_path)
    try:
        read_until(proc, "services up")
        assert len(session_pids(proc.pid)) >= 6
        proc.kill()  # SIGKILL: no chance to clean up; the kernel tells the children
        proc.wait(timeout=10)
        assert wait_gone(proc.pid) == []
    finally:
        if session_pids(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


def test_exit_after_play_exits_zero_after_the_summary(tmp_path: Path, packaged: Packaged) -> None:
    """With --live (here low-latency) the live event is on the air (steering's URLs list
    its segments) before the summary, which names its player page; every process is gone
    after."""
    seed_origin(tmp_path, packaged)
    proc = start_up(tmp_path, "--exit-after-play", "--live", "--low-latency")
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    assert "PLAYED through the CDN" in out and "ANSWER SECTION" in out
    assert "live event 'live' is on the air" in out and "player?title=live" in out
    assert "low-latency parts" in out and "&latency=low" in out
    assert wait_gone(proc.pid) == []


def test_a_failing_service_makes_up_exit_non_zero_with_its_log(
    tmp_path: Path, packaged: Packaged
) -> None:
    seed_origin(tmp_path, packaged)
    (tmp_path / "control.sqlite").mkdir(parents=True)  # the database path is a directory
    proc = start_up(tmp_path, "--exit-after-play")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "control exited" in out or "control did not answer" in out
    assert "Traceback" not in out.split("the end of")[0]
    assert wait_gone(proc.pid) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--appliances", "0"], "--appliances must be between 1 and"),
        (["--base-port", "80"], "--base-port must be between"),
        (["--duration", "1"], "--duration must be between"),
        (["--appliances", "x"], "invalid int value"),
        (["--low-latency"], "--low-latency needs --live"),
    ],
)
def test_bad_options_are_usage_errors_without_a_traceback(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_missing_ffmpeg_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    assert shutil.which("ffmpeg", path=env["PATH"]) is None
    result = subprocess.run(
        [sys.executable, "-m", "vcdn.cli", "up", "--data", str(tmp_path)], cwd=ROOT,
        capture_output=True, text=True, timeout=30, env=env,
    )
    assert result.returncode == 1
    assert "ffmpeg" in result.stderr and "apt-get install ffmpeg" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_up_on_the_same_state_directory_is_refused(tmp_path: Path) -> None:
    from onebox.up import lock_data
    from vcdn.errors import VcdnError

    held = lock_data(tmp_path)
    try:
        with pytest.raises(VcdnError, match="Another `vcdn up` is running"):
            lock_data(tmp_path)
    finally:
        held.close()
    lock_data(tmp_path).close()  # free again once the first one is gone


async def test_a_cluster_started_again_on_its_state_directory_reprovisions_its_appliances(
        tmp_path: Path, packaged: Packaged) -> None:
    """`make demo` twice: the second run finds the first one's enrolments in its control
    database; it updates them and rotates each appliance's token, as an operator would,
    so the appliances register again, and the first run's tokens no longer work."""
    first = await start_cluster(tmp_path, packaged, fill=False, appliances=1)
    old = first.slots[0].token
    await first.stop()
    second = Cluster(ClusterConfig(data=tmp_path, appliances=1))
    try:
        await second.start()
        async with aiohttp.ClientSession() as session:
            await wait_for_fleet(session, second)  # registered with their new tokens
        slot = second.slots[0]
        assert slot.token and slot.token != old
        url = f"{second.control_url}/api/v1/enrollments/{slot.id}"
        async with aiohttp.ClientSession() as session:
            for token, status in ((old, 401), (slot.token, 200)):
                async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == status, (token == old, await r.text())
    finally:
        await second.stop()
