"""UDP DNS in a thread of its own, many datagrams per system call: an I/O adapter, no DNS
logic.

asyncio costs each datagram a trip through the event loop (a readiness callback, a
`recvfrom`, the protocol's method, a `sendto`): several microseconds, as much as answering
the query. Here a thread blocks in Linux's `recvmmsg` (up to `BATCH` datagrams per call,
`MSG_WAITFORONE`: it returns as soon as one is there), answers them, and sends the answers
with one `sendmmsg`, each to the address its query came from. Python's `socket` module
has neither call, so they are reached through `ctypes` (which releases the GIL while the
thread waits, so the event loop keeps serving TCP, HTTP and the control poll). The
responder is the same object the asyncio transport uses; its view swaps are plain
attribute assignments, which the GIL makes atomic for this thread too.

`available()` says whether the calls exist (Linux); elsewhere `dns_server` keeps the
asyncio transport.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import socket
import sys
import threading
from collections.abc import Callable
from typing import Final

from vcdn.logs import event

log = logging.getLogger(__name__)

BATCH: Final = 64
SLOT: Final = 65536  # a datagram of any size fits; larger than MAX_QUERY, as asyncio reads
NAME: Final = 128  # sizeof(struct sockaddr_storage)
MSG_WAITFORONE: Final = 0x10000
POLL_SECONDS: Final = 0.2  # how often a waiting thread looks whether it should stop
MAX_PEERS: Final = 100_000
_SOCKADDR_IN: Final = 16
_SOCKADDR_IN6: Final = 28


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


_HDR: Final = ctypes.sizeof(_Mmsghdr)
_LEN_AT: Final = _Mmsghdr.msg_len.offset // 4
_IOVLEN_AT: Final = _Iovec.iov_len.offset // 8  # in 64-bit words of one iovec


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                     ctypes.c_void_p]
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    recv.restype = send.restype = ctypes.c_int
    return libc


_LIBC: Final = _libc()


def available() -> bool:
    return _LIBC is not None


Answer = Callable[[bytes, str], "bytes | None"]


class BatchedUdp:
    """Serves `answer(query, client_ip)` on a bound UDP socket from a thread; `close()`
    stops it. The socket is put in blocking mode with a receive timeout, so the thread
    notices `close()` within `POLL_SECONDS`."""

    def __init__(self, sock: socket.socket, answer: Answer) -> None:
        if _LIBC is None:
            raise RuntimeError("recvmmsg/sendmmsg are not available here")
        self._sock = sock
        self._answer = answer
        self._family = sock.family
        self.errors = 0
        self._stop = threading.Event()
        sock.setblocking(True)
        sec = int(POLL_SECONDS)
        usec = int((POLL_SECONDS - sec) * 1e6)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                        sec.to_bytes(8, sys.byteorder) + usec.to_bytes(8, sys.byteorder))
        self._thread = threading.Thread(target=self._run, name="dns-udp", daemon=True)

    def start(self) -> BatchedUdp:
        self._thread.start()
        return self

    def get_extra_info(self, name: str) -> object:
        return self._sock.getsockname() if name == "sockname" else None

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(POLL_SECONDS * 5 + 1)
        self._sock.close()


    def _run(self) -> None:
        assert _LIBC is not None
        recvmmsg, sendmmsg = _LIBC.recvmmsg, _LIBC.sendmmsg
        fd = self._sock.fileno()
        inbuf = bytearray(BATCH * SLOT)
        outbuf = bytearray(BATCH * SLOT)
        names = bytearray(BATCH * NAME)
        in_iov = (_Iovec * BATCH)()
        out_iov = (_Iovec * BATCH)()
        in_hdr = (_Mmsghdr * BATCH)()
        out_hdr = (_Mmsghdr * BATCH)()
        in_base = ctypes.addressof(ctypes.c_char.from_buffer(inbuf))
        out_base = ctypes.addressof(ctypes.c_char.from_buffer(outbuf))
        name_base = ctypes.addressof(ctypes.c_char.from_buffer(names))
        # Every sender's address has the socket's family, so its length is always that
        # family's sockaddr: set once, it needs no reset after each call (the kernel
        # writes back the same length) nor a copy into each answer's header.
        v6 = self._family == socket.AF_INET6
        namelen = _SOCKADDR_IN6 if v6 else _SOCKADDR_IN
        for i in range(BATCH):
            in_iov[i].iov_base, in_iov[i].iov_len = in_base + i * SLOT, SLOT
            out_iov[i].iov_base = out_base + i * SLOT
            h = in_hdr[i].msg_hdr
            h.msg_name, h.msg_namelen = name_base + i * NAME, namelen
            h.msg_iov, h.msg_iovlen = ctypes.addressof(in_iov[i]), 1
            o = out_hdr[i].msg_hdr
            o.msg_iov, o.msg_iovlen = ctypes.addressof(out_iov[i]), 1
            o.msg_namelen = namelen
        in_words = memoryview(in_hdr).cast("B").cast("I")
        out_ptrs = memoryview(out_hdr).cast("B").cast("Q")
        out_lens = memoryview(out_iov).cast("B").cast("Q")
        inview = memoryview(inbuf)
        outview = memoryview(outbuf)
        nameview = memoryview(names)
        # An IPv4 sender's address as one 32-bit word of its sockaddr_in (at 4, aligned):
        # read as an int, a dict key, without a slice and a copy per datagram.
        name_words = nameview.cast("I")
        in_addr = ctypes.addressof(in_hdr)
        out_addr = ctypes.addressof(out_hdr)
        hdr_words = _HDR // 4
        hdr_ptrs = _HDR // 8
        iov_words = ctypes.sizeof(_Iovec) // 8
        answer = self._answer
        # The client's address text, as asyncio's `addr[0]` gives it, memoised by its bytes
        # (sockaddr_in6: address at 8) or, for IPv4, its word (sockaddr_in: port at 2,
        # address at 4).
        af, a_lo, a_hi = (socket.AF_INET6, 8, 24) if v6 else (socket.AF_INET, 4, 8)
        ntop = socket.inet_ntop
        peers: dict[bytes | int, str] = {}
        # Per slot, computed once: where its length is (in 32-bit words of the headers),
        # where the sender's address is (its word, its bytes), where its datagram starts,
        # its sockaddr.
        slots = [(i * hdr_words + _LEN_AT, (i * NAME + a_lo) // 4, i * NAME + a_lo,
                  i * NAME + a_hi, i * SLOT, name_base + i * NAME) for i in range(BATCH)]
        # Per answer of a batch: where its bytes go, where its length and its msg_name are.
        outs = [(m * SLOT, m * iov_words + _IOVLEN_AT, m * hdr_ptrs) for m in range(BATCH)]
        stop = self._stop
        while not stop.is_set():
            n = recvmmsg(fd, in_addr, BATCH, MSG_WAITFORONE, None)
            if n <= 0:
                err = ctypes.get_errno()
                if n < 0 and err not in (errno.EAGAIN, errno.EINTR):
                    if err == errno.EBADF:
                        return  # closed under us
                    event(log, "dns_udp_error", level=logging.DEBUG, error=errno.errorcode.get(
                        err, str(err)))
                continue
            m = 0
            for lenat, word, lo, hi, start, sender in slots[:n]:
                peer = nameview[lo:hi].tobytes() if v6 else name_words[word]
                ip = peers.get(peer)
                if ip is None:
                    if len(peers) >= MAX_PEERS:
                        peers.clear()
                    ip = peers[peer] = ntop(af, nameview[lo:hi].tobytes())
                try:
                    resp = answer(inview[start : start + in_words[lenat]].tobytes(), ip)
                except Exception:  # a bug must cost one answer, never the server
                    self.errors += 1
                    log.exception("dns_answer_failed")
                    continue
                if resp is None:
                    continue
                at, len_at, name_at = outs[m]
                size = len(resp)
                outview[at : at + size] = resp
                out_lens[len_at] = size
                out_ptrs[name_at] = sender  # msg_name: the query's sender
                m += 1
            sent = 0
            while sent < m:
                r = sendmmsg(fd, out_addr + sent * _HDR, m - sent, 0)
                if r > 0:
                    sent += r
                elif ctypes.get_errno() != errno.EINTR:
                    sent += 1  # this answer cannot go (ICMP error, full buffer): drop it
