"""DNS over TCP limits of the real `vcdn steering` process: per-client cap and idle timeout."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import dns.message
import dns.query
import pytest

from tests.steering.conftest import SteeringProc, standard_appliances, start_steering, stop_steering
from tests.steering.fakes import FakeControl

EDGE = "edge.cdn.example."


@contextlib.contextmanager
def steering(**env: str) -> Iterator[SteeringProc]:
    fake = FakeControl().start()
    fake.appliances = standard_appliances()
    sp = start_steering(fake.url, env=env)
    try:
        yield sp
    finally:
        stop_steering(sp)
        fake.stop()


def _ask(sp: SteeringProc, source: str) -> dns.message.Message:
    return dns.query.tcp(
        dns.message.make_query(EDGE, "A"), "127.0.0.1", port=sp.dns_port, timeout=3,
        source=source,
    )


def _closed(sock: socket.socket, within: float) -> bool:
    """True if the server closes `sock` (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True
    except TimeoutError:
        return False


def test_one_client_holding_260_idle_connections_does_not_block_others() -> None:
    """260 idle connections from 127.0.0.1 (more than the global cap of 256): only 16 are
    kept; a client at 127.0.0.2 still gets its TCP answer, the hog's 261st does not."""
    with steering(VCDN_DNS_TCP_IDLE_TIMEOUT="30") as sp:
        hog: list[socket.socket] = []
        try:
            for _ in range(260):
                hog.append(socket.create_connection(("127.0.0.1", sp.dns_port), timeout=5))
            answer = _ask(sp, "127.0.0.2")
            assert answer.answer, answer
            kept = [s for s in hog if not _closed(s, 0.05)]
            assert len(kept) == 16
            with pytest.raises((EOFError, ConnectionError, dns.exception.DNSException)):
                _ask(sp, "127.0.0.1")
        finally:
            for s in hog:
                s.close()


def test_an_idle_tcp_connection_is_closed_after_the_idle_timeout() -> None:
    """dns_tcp_idle_timeout = 0.5: a connection that sends nothing is closed soon after."""
    with steering(VCDN_DNS_TCP_IDLE_TIMEOUT="0.5") as sp:
        sock = socket.create_connection(("127.0.0.1", sp.dns_port), timeout=5)
        start = time.monotonic()
        try:
            assert _closed(sock, 5.0)
            assert time.monotonic() - start < 4.0
        finally:
            sock.close()
        assert _ask(sp, "127.0.0.1").answer  # and TCP still answers
