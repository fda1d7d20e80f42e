"""The servers under test, as real processes: `vcdn control` and, as the baseline, nginx
answering the same PUT with a canned JSON ack (the HTTP floor: no auth, no JSON parsing,
no database). CPU is read from /proc for the process tree."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from onebox.procs import free_port

ROOT: Final = Path(__file__).resolve().parents[2]
ACK: Final = '{"state":"healthy","heartbeat_interval":10.0}'


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: IO[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout:.0f} s")


def start_control(db: str, tokens: str, workdir: Path, cpu: int | None = None) -> Server:
    """`vcdn control` on a free port, pinned to `cpu` with taskset when given."""
    port = free_port()
    env = dict(os.environ, VCDN_CONTROL_TOKENS=tokens, PYTHONPATH=str(ROOT))
    log = open(workdir / "control.log", "wb")
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    proc = subprocess.Popen(
        [*pin, sys.executable, "-m", "vcdn.cli", "control", "--db", db, "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    wait_port(port, proc, "vcdn control")
    return Server("control", proc, f"http://127.0.0.1:{port}", log)


def start_nginx(workdir: Path) -> Server | None:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        return None
    port = free_port()
    conf = workdir / "nginx.conf"
    tmp = workdir / "nginx-tmp"
    tmp.mkdir(exist_ok=True)
    conf.write_text(
        f"""daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{ACK}';
        }}
    }}
}}
"""
    )
    log = open(workdir / "nginx.log", "wb")
    proc = subprocess.Popen(
        [nginx, "-c", str(conf), "-e", str(workdir / "nginx-error.log")], stdout=log, stderr=log
    )
    wait_port(port, proc, "nginx")
    return Server("nginx", proc, f"http://127.0.0.1:{port}", log)


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
