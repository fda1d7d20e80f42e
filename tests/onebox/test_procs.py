"""Child processes that cannot outlive their parent (onebox.procs), with real processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from onebox.procs import Proc, ServiceFailed, free_port, run_to_end


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_free_port_is_bindable_for_tcp_and_udp() -> None:
    port = free_port(socket.SOCK_DGRAM)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t, socket.socket(
        socket.AF_INET, socket.SOCK_DGRAM
    ) as u:
        t.bind(("127.0.0.1", port))
        u.bind(("127.0.0.1", port))


async def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
           "print('ready', flush=True); time.sleep(60)"
    proc = Proc("stubborn", [sys.executable, "-c", code], log_path=tmp_path / "s.log")
    await proc.start()
    for _ in range(500):
        if "ready" in (tmp_path / "s.log").read_text().splitlines()[1:]:
            break
        await asyncio.sleep(0.02)
    t0 = time.monotonic()
    assert await proc.stop(grace=0.5) == -signal.SIGKILL
    assert 0.4 < time.monotonic() - t0 < 5
    assert not proc.running


async def test_wait_healthy_reports_an_early_exit_with_the_log_tail(tmp_path: Path) -> None:
    proc = Proc(
        "broken", [sys.executable, "-c", "import sys; print('bad setting x'); sys.exit(3)"],
        log_path=tmp_path / "b.log", health_url=f"http://127.0.0.1:{free_port()}/healthz",
    )
    await proc.start()
    with pytest.raises(ServiceFailed, match=r"(?s)exited with status 3.*bad setting x"):
        await proc.wait_healthy(within=10)


async def test_wait_healthy_gives_up_after_its_deadline(tmp_path: Path) -> None:
    proc = Proc("silent", [sys.executable, "-c", "import time; time.sleep(30)"],
                log_path=tmp_path / "q.log", health_url=f"http://127.0.0.1:{free_port()}/")
    await proc.start()
    try:
        with pytest.raises(ServiceFailed, match="did not answer"):
            await proc.wait_healthy(within=0.5)
    finally:
        await proc.stop(1)


async def test_a_failing_one_shot_command_raises_with_its_output(tmp_path: Path) -> None:
    with pytest.raises(ServiceFailed, match=r"(?s)status 2.*no such input"):
        await run_to_end("tool", [sys.executable, "-c", "import sys; print('no such input');"
                                  " sys.exit(2)"], log_path=tmp_path / "t.log")
    with pytest.raises(ServiceFailed, match="longer than"):
        await run_to_end("slow", [sys.executable, "-c", "import time; time.sleep(30)"],
                         log_path=tmp_path / "t2.log", within=0.3)


def test_children_die_with_a_sigkilled_parent(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a parent killed with no chance to clean up still takes its child."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        from onebox.procs import Proc
        async def main():
            p = Proc("child", [sys.executable, "-c", "import time; time.sleep(60)"],
                     log_path=Path({str(tmp_path / 'c.log')!r}))
            await p.start()
            print(p.pid, flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.kill()
    parent.wait(5)
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
