"""The batched UDP server (recvmmsg/sendmmsg in a thread) on real loopback sockets: every
query of a burst from several clients gets the responder's answer, sent back to the
socket it came from; junk and a failing answer cost one datagram, never the thread."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import dns.edns
import dns.message
import pytest

from steering import dns_udp
from steering.compiled import CompiledMap
from steering.dns_answer import Responder, ZoneConfig
from steering.dns_server import UDP_RCVBUF
from steering.select import Policy, select
from steering.view import build_view
from tests.steering.conftest import standard_appliances
from vcdn.schemas import ApplianceView, decode

pytestmark = pytest.mark.skipif(not dns_udp.available(), reason="recvmmsg is Linux only")


def responder() -> Responder:
    view = build_view([decode(ApplianceView, a) for a in standard_appliances()])
    policy = Policy()
    compiled = CompiledMap(view, None, policy, answers=2, ttl=20, udp_payload=1232)
    return Responder(ZoneConfig.make("cdn.example."),
                     lambda c: select(c, view, None, policy, depth=2), compiled)


@pytest.fixture()
def served() -> Iterator[tuple[dns_udp.BatchedUdp, int, Responder]]:
    r = responder()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # The receive buffer `vcdn steering` sets: a 600-query burst overflows the kernel's
    # default one whenever the server thread is off the CPU for a moment.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
    sock.bind(("127.0.0.1", 0))
    udp = dns_udp.BatchedUdp(sock, r.answer).start()
    yield udp, sock.getsockname()[1], r
    udp.close()


def ecs_query(i: int, qid: int) -> bytes:
    q = dns.message.make_query("edge.cdn.example.", "A" if i % 3 else "AAAA", use_edns=0,
                               options=[dns.edns.ECSOption.from_text(f"10.{i % 200}.{i % 7}.0/24")])
    q.id = qid
    return q.to_wire()


def collect(socks: list[socket.socket], want: int, seconds: float = 10.0) -> dict[bytes, bytes]:
    """Answers by (socket index, ID) until `want` came or time ran out."""
    got: dict[bytes, bytes] = {}
    deadline = time.monotonic() + seconds
    for s in socks:
        s.setblocking(False)
    while len(got) < want and time.monotonic() < deadline:
        idle = True
        for k, s in enumerate(socks):
            try:
                data = s.recv(65535)
            except BlockingIOError:
                continue
            idle = False
            got[bytes([k]) + data[:2]] = data
        if idle:
            time.sleep(0.002)
    return got


def test_a_burst_from_several_clients_gets_every_answer_back_to_its_sender(
    served: tuple[dns_udp.BatchedUdp, int, Responder],
) -> None:
    udp, port, r = served
    reference = responder()
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sent: dict[bytes, bytes] = {}
    # 4 x 150 queries without waiting: the server sees many at once (several per recvmmsg).
    for i in range(600):
        k = i % 4
        q = ecs_query(i, 1000 + i)
        socks[k].sendto(q, ("127.0.0.1", port))
        sent[bytes([k]) + q[:2]] = q
    got = collect(socks, len(sent))
    for s in socks:
        s.close()
    assert len(got) == len(sent)  # loopback with big buffers loses nothing
    for key, q in sent.items():
        assert got[key] == reference.answer(q, "127.0.0.1"), key
    assert r.compiled_answers > 0 and udp.errors == 0


def test_junk_and_a_failing_answer_cost_one_datagram_each(
    served: tuple[dns_udp.BatchedUdp, int, Responder],
) -> None:
    udp, port, _r = served
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        for junk in (b"", b"\x00", b"\xff" * 11, b"\x12\x34\x80" + bytes(20), bytes(4000)):
            s.sendto(junk, ("127.0.0.1", port))
        q = ecs_query(1, 77)
        s.sendto(q, ("127.0.0.1", port))
        # Shorter than a header, a response, or all zeros: dropped or FORMERR; the next
        # query is answered either way.
        while True:
            data = s.recv(65535)
            if data[:2] == q[:2]:
                break
        assert data == responder().answer(q, "127.0.0.1")
    assert udp.errors == 0


def test_an_exception_in_the_answer_is_counted_and_the_thread_goes_on() -> None:
    calls: list[bytes] = []

    def answer(q: bytes, ip: str) -> bytes | None:
        calls.append(q)
        if q == b"boom":
            raise ValueError("a bug")
        return b"re:" + q + ip.encode()

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    udp = dns_udp.BatchedUdp(sock, answer).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(b"boom", sock.getsockname())
            s.sendto(b"ok", sock.getsockname())
            assert s.recv(100) == b"re:ok127.0.0.1"
        assert udp.errors == 1
    finally:
        started = time.monotonic()
        udp.close()
        assert time.monotonic() - started < 2  # the thread notices close() promptly


def test_ipv6_clients_get_their_answers() -> None:
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    udp = dns_udp.BatchedUdp(sock, lambda q, ip: q + b"@" + ip.encode()).start()
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(b"hello", ("::1", sock.getsockname()[1]))
            assert s.recv(100) == b"hello@::1"
    finally:
        udp.close()


def test_each_ipv4_sender_gets_its_own_address() -> None:
    """Senders are told apart by their address (memoised per sender): several loopback
    addresses, each more than once, in one batch and across batches."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    udp = dns_udp.BatchedUdp(sock, lambda q, ip: q + b"@" + ip.encode()).start()
    clients = []
    try:
        for k in range(1, 5):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.bind((f"127.0.0.{k}", 0))
            c.settimeout(2)
            clients.append(c)
        for _ in range(3):
            for k, c in enumerate(clients, 1):
                c.sendto(b"q%d" % k, sock.getsockname())
            for k, c in enumerate(clients, 1):
                assert c.recv(100) == b"q%d@127.0.0.%d" % (k, k)
    finally:
        for c in clients:
            c.close()
        udp.close()
