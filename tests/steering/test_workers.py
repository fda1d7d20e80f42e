"""`vcdn steering --workers 2`: both workers answer over UDP and TCP (kdig, dig), answer
identically, a killed worker is replaced and SIGHUP swaps in a new generation without a
failed query. Which worker answered is read from the RFC 5001 NSID option."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import pytest

from onebox.procs import free_port
from tests.steering.conftest import (
    SteeringProc,
    spawn_steering,
    start_steering,
    stop_steering,
    wait_for,
)
from tests.steering.fakes import FakeControl

pytestmark = pytest.mark.slow
NSID_RE = re.compile(r'NSID: [0-9A-F]+ "([^"]+)"')
SUBNETS = ["81.2.69.0/24", "89.160.20.0/24", "216.160.83.0/24", "2001:db8:100::/48",
           "1.2.3.0/24"]


@pytest.fixture
def workers(control: FakeControl) -> Iterator[SteeringProc]:
    sp = start_steering(control.url, "--workers", "2")
    yield sp
    assert stop_steering(sp) == 0


def kdig(port: int, *args: str, count: int = 20) -> list[tuple[str, str, list[str]]]:
    """(status, NSID, answer lines) of `count` queries, each on its own socket."""
    queries = ["edge.cdn.example", "A"] * count
    out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(port), "+time=5", "+retry=2",
                          *args, *queries], capture_output=True, text=True, timeout=60).stdout
    replies = []
    for part in out.split(";; ->>HEADER<<-")[1:]:
        status = re.search(r"status: (\w+)", part)
        nsid = NSID_RE.search(part)
        answer = part.split(";; ANSWER SECTION:")[1].split("\n\n")[0] if \
            ";; ANSWER SECTION:" in part else ""
        replies.append((status.group(1) if status else "", nsid.group(1) if nsid else "",
                        sorted(line.split()[-1] for line in answer.strip().splitlines())))
    return replies


def test_two_workers_both_answer_udp_and_tcp_identically(workers: SteeringProc) -> None:
    for transport in ("+notcp", "+tcp"):
        for subnet in SUBNETS:
            replies = kdig(workers.dns_port, "+nsid", transport, f"+subnet={subnet}")
            assert len(replies) == 20
            assert {r[0] for r in replies} == {"NOERROR"}, replies
            assert {r[1] for r in replies} == {"1.0", "1.1"}, (transport, replies)
            answers = {tuple(r[2]) for r in replies}
            assert len(answers) == 1 and next(iter(answers)), (transport, subnet, answers)
    # Without NSID, the query takes the compiled path: still one answer from both.
    for subnet in SUBNETS[:3]:
        replies = kdig(workers.dns_port, f"+subnet={subnet}")
        assert len({tuple(r[2]) for r in replies}) == 1 and replies[0][2]
    dig = subprocess.run(["dig", "@127.0.0.1", "-p", str(workers.dns_port), "+tcp", "+nsid",
                          "+subnet=81.2.69.0/24", "edge.cdn.example", "A", "+short"],
                         capture_output=True, text=True, timeout=30).stdout
    assert sorted(dig.split()) == kdig(workers.dns_port, "+subnet=81.2.69.0/24", count=1)[0][2]


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(x) for x in text.split()]


def test_a_killed_worker_is_replaced_and_sighup_reloads_gracefully(
        workers: SteeringProc) -> None:
    first = _children(workers.proc.pid)
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    assert wait_for(lambda: len(set(_children(workers.proc.pid)) - set(first)) == 1, 30)
    assert wait_for(lambda: {r[1] for r in kdig(workers.dns_port, "+nsid")} == {"1.0", "1.1"},
                    30)
    workers.proc.send_signal(signal.SIGHUP)
    seen: set[str] = set()
    for _ in range(200):  # bounded: until the new generation answers on both workers
        replies = kdig(workers.dns_port, "+nsid", count=10)
        assert {r[0] for r in replies} == {"NOERROR"} and len(replies) == 10
        seen |= {r[1] for r in replies}
        if {"2.0", "2.1"} <= {r[1] for r in replies}:
            break
    assert {"2.0", "2.1"} <= seen
    assert wait_for(lambda: len(_children(workers.proc.pid)) == 2, 20)


def test_queries_sent_while_the_workers_start_are_all_answered(control: FakeControl) -> None:
    """The supervisor holds the port (in the SO_REUSEPORT group) while its workers start:
    a query that reaches the port then, or is hashed to the reservation before it is let
    go, is answered by the first worker, which takes over that socket, not dropped with
    it. Each query has its own connected socket (its own source port, so its own hash):
    one sent before anything is bound is refused (ICMP port unreachable) and sent again."""
    port = free_port(socket.SOCK_DGRAM)
    proc = spawn_steering(control.url, "--workers", "2", dns_port=port)
    assert proc.stdout is not None
    waiting: list[socket.socket] = []
    refused = early = answered = 0
    ready_at: float | None = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (ready_at is None
                                               or time.monotonic() < ready_at + 1.0):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect(("127.0.0.1", port))
            s.send(dns.message.make_query("edge.cdn.example.", "A").to_wire())
            waiting.append(s)
            if ready_at is None and select.select([proc.stdout], [], [], 0.02)[0]:
                assert "DNS on" in proc.stdout.readline()
                ready_at = time.monotonic()
                early = len(waiting)
            time.sleep(0.005)
            still = []
            for w in waiting:  # drop the refused ones: nothing was bound when they left
                try:
                    w.recv(65535, socket.MSG_DONTWAIT)
                    answered += 1
                    w.close()
                except ConnectionRefusedError:
                    refused += 1
                    early -= 1 if ready_at is None else 0
                    w.close()
                except BlockingIOError:
                    still.append(w)
            waiting = still
        assert ready_at is not None, "the workers never said they listen"
        lost = 0
        until = time.monotonic() + 10
        for w in waiting:  # every other query has an answer on its way
            w.settimeout(max(0.01, until - time.monotonic()))
            try:
                w.recv(65535)
                answered += 1
            except (TimeoutError, ConnectionRefusedError):
                lost += 1
            w.close()
        assert early > 0, "no query reached the port before the workers were ready"
        assert lost == 0, f"{lost} of {answered + lost} queries were never answered"
    finally:
        for w in waiting:
            w.close()
        proc.terminate()
        proc.wait(10)
