"""asyncio UDP and TCP transports for the DNS responder: thin adapters, no DNS logic.

UDP: one datagram in, at most one out. TCP (RFC 7766): two-byte length prefix, several
queries per connection, closed after an idle timeout so idle clients cannot pile up; a cap
on connections in all and a smaller one per client address (§6.2.2: servers may limit
connections per client), so that one client holding many idle connections cannot take
TCP away from everyone else.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final, Protocol

from steering import dns_udp
from steering.dns_answer import Responder
from vcdn.logs import event

log = logging.getLogger(__name__)

BIND_ATTEMPTS: Final = 20
UDP_RCVBUF: Final = 4 * 1024 * 1024


class UdpProtocol(asyncio.DatagramProtocol):
    __slots__ = ("_answer", "errors", "responder", "transport")

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self._answer = responder.answer  # bound once: the hot path skips two lookups
        self.transport: asyncio.DatagramTransport | None = None
        self.errors = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            resp = self._answer(data, addr[0])
        except Exception:  # a bug must cost one answer, never the server
            self.errors += 1
            log.exception("dns_answer_failed")
            return
        if resp is not None and self.transport is not None:
            self.transport.sendto(resp, addr)

    def error_received(self, exc: Exception) -> None:
        event(log, "dns_udp_error", level=logging.DEBUG, error=str(exc))


class _TcpSettings(Protocol):
    dns_tcp_max_connections: int
    dns_tcp_per_client: int
    dns_tcp_idle_timeout: float


@dataclass(frozen=True, slots=True)
class TcpLimits:
    max_connections: int = 256
    per_client: int = 16
    #: RFC 7766 §6.2.3 suggests seconds, not minutes.
    idle_timeout: float = 10.0

    @classmethod
    def of(cls, s: _TcpSettings) -> TcpLimits:
        return cls(s.dns_tcp_max_connections, s.dns_tcp_per_client, s.dns_tcp_idle_timeout)


class TcpServer:
    """Serves length-prefixed queries; counts connections, in all and per client."""

    def __init__(self, responder: Responder, limits: TcpLimits | None = None) -> None:
        self.responder = responder
        self.limits = limits or TcpLimits()
        self.connections = 0
        self.per_client: Counter[str] = Counter()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = peer[0] if peer else "0.0.0.0"
        limits = self.limits
        if self.connections >= limits.max_connections or self.per_client[ip] >= limits.per_client:
            reason = "per_client" if self.per_client[ip] >= limits.per_client else "total"
            event(log, "dns_tcp_refused", level=logging.WARNING, client=ip, reason=reason)
            writer.close()
            return
        self.connections += 1
        self.per_client[ip] += 1
        idle = limits.idle_timeout
        try:
            while True:
                async with asyncio.timeout(idle):
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    query = await reader.readexactly(length)
                try:
                    resp = self.responder.answer(query, ip, tcp=True)
                except Exception:
                    log.exception("dns_answer_failed")
                    break
                if resp is None:
                    break  # RFC 7766 §7: nothing sensible to say, close
                writer.write(struct.pack("!H", len(resp)) + resp)
                async with asyncio.timeout(idle):  # a client that never reads
                    await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.connections -= 1
            self.per_client[ip] -= 1
            if self.per_client[ip] <= 0:
                del self.per_client[ip]
            writer.close()


class Closable(Protocol):
    def close(self) -> None: ...

    def get_extra_info(self, name: str) -> Any: ...


async def start(
    responder: Responder, host: str, port: int, reuse_port: bool = False,
    limits: TcpLimits | None = None, batched: bool | None = None,
    udp_sock: socket.socket | None = None,
) -> tuple[Closable, asyncio.Server, int]:
    """Bind UDP and TCP on the same port (port 0: UDP picks, TCP follows; if that TCP port
    is taken, try another). `reuse_port`: share the port with the other worker processes
    (SO_REUSEPORT: the kernel spreads datagrams and connections over them). `batched`
    (default: where available) serves UDP from a thread with recvmmsg/sendmmsg
    (`dns_udp`), else from the event loop. `udp_sock`: a UDP socket already bound (the
    supervisor's reservation, handed over with the queries already queued on it), served
    instead of binding a new one."""
    if batched is None:
        batched = dns_udp.available()
    loop = asyncio.get_running_loop()
    tcp = TcpServer(responder, limits)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for attempt in range(BIND_ATTEMPTS):
        sock = udp_sock if udp_sock is not None else _bind_udp(family, host, port, reuse_port)
        udp: Closable
        if batched:
            udp = dns_udp.BatchedUdp(sock, responder.answer)
        else:
            sock.setblocking(False)
            udp, _ = await loop.create_datagram_endpoint(lambda: UdpProtocol(responder),
                                                         sock=sock)
        bound = udp.get_extra_info("sockname")[1]
        try:
            server = await asyncio.start_server(tcp.handle, host, bound, reuse_address=True,
                                                reuse_port=reuse_port or None)
        except OSError:
            udp.close()
            if port or udp_sock is not None or attempt == BIND_ATTEMPTS - 1:
                raise
            continue
        if isinstance(udp, dns_udp.BatchedUdp):
            udp.start()
        return udp, server, bound
    raise AssertionError("unreachable")


def _bind_udp(family: int, host: str, port: int, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        # A burst of small datagrams costs ~1 KiB of buffer each (skb truesize): the
        # default ~208 KiB overflows at a few hundred queries in flight. The kernel caps
        # this at net.core.rmem_max.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
