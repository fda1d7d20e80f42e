"""The HTTP caching conformance suite (npm ``http-cache-tests``, pinned in package.json)
against a cache on loopback.

Three processes: the suite's own origin (``tests/conformance/origin.mjs``, the package's
request handlers bound to 127.0.0.1), the cache under test in front of it, and the
suite's client (``tests/conformance/client.mjs``), which runs every test through the
cache and writes one JSON document: each test's id, kind (required / optimal / check),
outcome and detail, classified by the package's own rules. `Summary` reads it.

    with origin() as up, edge(up, work) as base:
        summary = run_client(base, work / "edge.json")
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from onebox.procs import free_port

REPO: Final = Path(__file__).resolve().parents[2]
HERE: Final = REPO / "tests" / "conformance"
PACKAGE: Final = REPO / "node_modules" / "http-cache-tests"
#: The release the figures are for; package.json pins the same.
VERSION: Final = "0.4.5"
#: The whole suite pauses 3 s a few times per chunk of 100 tests: about 20 s quiet.
CLIENT_TIMEOUT: Final = 240.0
#: The edge's breaker_threshold for the suite (see `edge`).
BREAKER_THRESHOLD: Final = 1000

NGINX_CONF: Final = """\
daemon off;
master_process off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    proxy_cache_path {work}/cache levels=1:2 keys_zone=suite:8m max_size=100m inactive=600m;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {upstream};
            proxy_cache suite;
            proxy_cache_revalidate on;
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Summary:
    """One run's outcomes: counts per outcome and the tests in each."""

    counts: dict[str, int]
    tests: list[dict[str, Any]]
    seconds: float

    @classmethod
    def load(cls, path: Path) -> Summary:
        doc = json.loads(path.read_text())
        return cls(counts=dict(doc["counts"]), tests=list(doc["tests"]), seconds=doc["seconds"])

    @property
    def passed(self) -> int:
        return self.counts.get("passed", 0)

    def ids(self, outcome: str, kind: str | None = None) -> list[str]:
        return [
            t["id"]
            for t in self.tests
            if t["outcome"] == outcome and (kind is None or t["kind"] == kind)
        ]

    def required_failures(self) -> list[str]:
        """Required tests that did not pass: failed outright, or could not even be set up
        or judged (a failure of ours as much as an assertion)."""
        bad = ("failed", "setup_failed", "harness_failed", "retried")
        return [t["id"] for t in self.tests if t["kind"] == "required" and t["outcome"] in bad]

    def detail(self, test_id: str) -> str:
        return next((t["detail"] for t in self.tests if t["id"] == test_id), "")

    def line(self) -> str:
        order = ("passed", "failed", "optional_failed", "setup_failed", "dependency_failed",
                 "retried", "harness_failed", "yes", "no")
        return ", ".join(f"{self.counts[k]} {k}" for k in order if self.counts.get(k))




def check_installed() -> None:
    if shutil.which("node") is None:
        raise RuntimeError("node is not installed (make install installs it with npm).")
    if not (PACKAGE / "package.json").exists():
        raise RuntimeError(f"{PACKAGE} is missing: run `make install` (npm ci).")
    version = json.loads((PACKAGE / "package.json").read_text())["version"]
    if version != VERSION:
        raise RuntimeError(f"http-cache-tests {version} is installed; the figures are for "
                           f"{VERSION} (package.json pins it: run `make install`).")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_port(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args} did not listen on {port} within {timeout} s")


@contextlib.contextmanager
def _process(cmd: list[str], log: Path, port: int, timeout: float = 20.0,
             env: dict[str, str] | None = None) -> Iterator[None]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, **(env or {})})
    try:
        _wait_port(proc, port, log, timeout)
        yield
    finally:
        _stop(proc)


@contextlib.contextmanager
def origin(work: Path) -> Iterator[str]:
    """The suite's origin on a free loopback port; yields its base URL."""
    check_installed()
    port = free_port()
    with _process(["node", str(HERE / "origin.mjs"), str(port)], work / "origin.log", port):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def edge(upstream: str, work: Path) -> Iterator[str]:
    """`vcdn edge --auth none` (one worker, an empty cache) in front of `upstream`.

    The suite's origin fails or drops a score of different URLs at the same instant,
    on purpose; the circuit breaker would rightly take that for an origin in trouble and
    fail the other tests' misses for `breaker_reset` seconds. nginx has no breaker, so
    for a like-for-like run the threshold is out of reach (`BREAKER_THRESHOLD`)."""
    port = free_port()
    cache = work / "edge-cache"
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [sys.executable, "-m", "vcdn.cli", "edge", "--auth", "none", "--cache-dir", str(cache),
           "--capacity", "1GiB", "--upstream", upstream, "--port", str(port), "--workers", "1",
           "--log-level", "warning"]
    env = {"VCDN_BREAKER_THRESHOLD": str(BREAKER_THRESHOLD)}
    with _process(cmd, work / "edge.log", port, env=env):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def nginx(upstream: str, work: Path) -> Iterator[str]:
    """nginx with proxy_cache and proxy_cache_revalidate (the package's own nginx setup)."""
    port = free_port()
    ngx = work / "nginx"
    shutil.rmtree(ngx, ignore_errors=True)
    ngx.mkdir(parents=True)
    conf = ngx / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=ngx, port=port, upstream=upstream))
    with _process(["nginx", "-c", str(conf), "-p", str(ngx)], work / "nginx.log", port):
        yield f"http://127.0.0.1:{port}"


def run_client(base: str, out: Path, timeout: float = CLIENT_TIMEOUT) -> Summary:
    """Run every test of the suite through the cache at `base`; results go to `out`."""
    proc = subprocess.run(["node", str(HERE / "client.mjs"), base, str(out)], cwd=REPO,
                          capture_output=True, timeout=timeout, check=False)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"the suite's client failed ({proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return Summary.load(out)
