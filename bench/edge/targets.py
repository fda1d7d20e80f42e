"""Servers under test. A target is command lines plus the URL prefix that maps onto the
content root; adding a server means adding one factory to `TARGETS`.

Every factory gets the content root, a free port and a scratch directory, and returns a
`Target`. Helper processes (e.g. the origin behind an edge) come first in ``commands``;
the last command is the server measured (its CPU time and RSS, children included).
Servers are pinned to `SERVER_CPU`; the load generator runs on another core.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.nginxconf import static_conf, video_server

REPO: Final = Path(__file__).resolve().parents[2]
SERVER_CPU: Final = "0"
LOAD_CPU: Final = "1"



@dataclass
class Target:
    name: str
    commands: list[list[str]]
    url_prefix: str  # + "{title}/{path}"
    #: fetched once per helper command before it counts as started (None: wait for the port)
    ready_urls: list[str | None] = field(default_factory=list)
    #: URLs fetched before measuring (e.g. to fill an edge cache): prefix-relative paths.
    warm: bool = False
    env: dict[str, str] = field(default_factory=dict)
    #: For a signed target measured with new tokens: n URL prefixes, each a new token.
    fresh_prefixes: Callable[[int], list[str]] | None = None
    #: Requests in a row that use one of those prefixes.
    batch: int = 1
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.procs[-1].pid

    def start(self, workdir: Path, wrap: list[str] | None = None) -> None:
        """Start every command (the last one under `wrap`, e.g. strace), pinned, and wait."""
        for i, cmd in enumerate(self.commands):
            last = i == len(self.commands) - 1
            full = ["taskset", "-c", SERVER_CPU, *((wrap or []) if last else []), *cmd]
            with open(workdir / f"{self.name}-{i}.log", "wb") as log:
                proc = subprocess.Popen(
                    full, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, **self.env}, start_new_session=True,
                )
            self.procs.append(proc)
            url = self.ready_urls[i] if i < len(self.ready_urls) else None
            wait_ready(proc, url or self.url_prefix, workdir / f"{self.name}-{i}.log")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 20.0) -> None:
    """Poll `url` until the server answers anything (even 404)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{proc.args} did not answer {url} within {timeout} s")


def nginx(root: Path, port: int, work: Path) -> Target:
    """nginx 1 worker with sendfile and an open-file cache: a well-tuned static server."""
    conf = work / "nginx.conf"
    conf.write_text(static_conf(work, "nginx", video_server(root, f"127.0.0.1:{port}")))
    return Target("nginx", [["nginx", "-c", str(conf), "-p", str(work)]], f"http://127.0.0.1:{port}/v/")


def origin(root: Path, port: int, work: Path) -> Target:
    """`vcdn origin` (uvloop, sendfile for large bodies)."""
    cmd = [sys.executable, "-m", "vcdn.cli", "origin", "--root", str(root), "--port", str(port)]
    return Target("origin", [cmd], f"http://127.0.0.1:{port}/v/")


TargetFactory = Callable[[Path, int, Path], Target]
TARGETS: dict[str, TargetFactory] = {"nginx": nginx, "origin": origin}
