"""A real `vcdn control` process on loopback, for the tests that need one."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from tests.conftest import ROOT

LISTEN_RE: Final = re.compile(r"listening on (http://\S+)")
START_TIMEOUT: Final = 15.0


@dataclass
class ControlProcess:
    proc: subprocess.Popen[str]
    url: str
    log: IO[str]

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, as an init system would; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.log.close()


def start_control(db: str, tokens: str, tmp: Path, *extra: str) -> ControlProcess:
    """Start `vcdn control --port 0` and wait for the line saying where it listens."""
    env = dict(os.environ, VCDN_CONTROL_TOKENS=tokens, PYTHONPATH=str(ROOT))
    stderr = open(tmp / "control.stderr", "w")  # closed by ControlProcess.stop
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcdn.cli", "control", "--db", db, "--port", "0", *extra],
        cwd=tmp,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = LISTEN_RE.search(line)
        if m:
            return ControlProcess(proc, m.group(1), stderr)
    proc.kill()
    proc.wait()
    stderr.close()
    raise AssertionError(f"vcdn control did not start: {(tmp / 'control.stderr').read_text()}")
