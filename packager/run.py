"""Running ffmpeg: one child process, progress from its ``-progress pipe:1`` output.

ffmpeg's stderr goes to a log file next to (never inside) the title being built, so a
chatty encoder cannot fill a pipe and stall, and a failure can quote ffmpeg's own last
words. The child dies with us (``PR_SET_PDEATHSIG``): if the packager is killed, no
orphaned encoder keeps writing into the staging directory. An interrupt terminates
ffmpeg and re-raises, so the caller's cleanup removes the half-built title.
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol, TextIO

from packager.progress import Progress, ProgressParser, format_bar, format_line
from vcdn.errors import MediaError, VcdnError

INSTALL_HINT: Final = "install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg)"
TERMINATE_GRACE_S: Final = 5.0
TTY_REDRAW_S: Final = 0.2
PR_SET_PDEATHSIG: Final = 1


class Reporter(Protocol):
    def update(self, p: Progress) -> None: ...
    def finish(self) -> None: ...


class NullReporter:
    """`--quiet`: says nothing."""

    def update(self, p: Progress) -> None:
        pass

    def finish(self) -> None:
        pass


class BarReporter:
    """A terminal: one line redrawn in place with a progress bar, speed and ETA."""

    def __init__(self, title: str, duration: float, stream: TextIO) -> None:
        self.title, self.duration, self.stream = title, duration, stream
        self._last = 0.0
        self._drawn = False

    def update(self, p: Progress) -> None:
        now = time.monotonic()
        if not p.done and now - self._last < TTY_REDRAW_S:
            return
        self._last = now
        # \r returns to the line start; ESC [K clears what a longer previous line left.
        self.stream.write("\r" + format_bar(self.title, p, self.duration) + "\x1b[K")
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


class LineReporter:
    """A pipe or a CI log: a plain line every `interval` seconds, and one at the end."""

    def __init__(self, title: str, duration: float, stream: TextIO, interval: float) -> None:
        self.title, self.duration, self.stream, self.interval = title, duration, stream, interval
        self._last: float | None = None

    def update(self, p: Progress) -> None:
        now = time.monotonic()
        if not p.done and self._last is not None and now - self._last < self.interval:
            return
        if self._last is None and not p.done and p.seconds <= 0:
            return  # nothing to say before the first frame
        self._last = now
        self.stream.write(format_line(self.title, p, self.duration) + "\n")
        self.stream.flush()

    def finish(self) -> None:
        pass


def find_tool(name: str) -> str:
    """The path of `name` on PATH, or a VcdnError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise VcdnError(f"'{name}' was not found on PATH; {INSTALL_HINT}.")
    return path


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def last_words(log: Path, limit: int = 2) -> str:
    """ffmpeg's last meaningful stderr lines, joined into one line."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    lines = [ln.strip() for ln in lines if ln.strip()]
    return " / ".join(lines[-limit:]) if lines else "no message"


def run_ffmpeg(
    argv: list[str],
    *,
    log: Path,
    on_progress: Callable[[Progress], None],
) -> None:
    """Run ffmpeg to completion; MediaError if it fails, KeyboardInterrupt passes through
    after the child is gone."""
    parser = ProgressParser()
    with open(log, "wb") as err:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                preexec_fn=_die_with_parent,  # the CLI is single-threaded here
            )
        except FileNotFoundError:
            raise VcdnError(f"'{argv[0]}' was not found; {INSTALL_HINT}.") from None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                p = parser.feed(line)
                if p is not None:
                    on_progress(p)
            code = proc.wait()
        except BaseException:
            _stop(proc)
            raise
    if code != 0:
        raise MediaError(f"ffmpeg failed (exit status {code}): {last_words(log)}")


def _stop(proc: subprocess.Popen[str]) -> None:
    """Ask ffmpeg to stop, then insist."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
