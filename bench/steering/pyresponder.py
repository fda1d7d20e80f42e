"""The Python ceiling: a minimal dnspython responder (parse, one A record, ECS echo).

`python -m bench.steering.pyresponder PORT [--mmdb FILE]`: answers every query for any
name with one A record; with --mmdb it also does one MaxMind lookup on the client address
(ECS when present), like a naive geo-steering server written the obvious way.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import maxminddb

# Built once: the responder pays only for parsing, the response and rendering.
ANSWER = dns.rdata.from_text("IN", "A", "127.0.0.9")


class Responder(asyncio.DatagramProtocol):
    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            q = dns.message.from_wire(data)
        except Exception:
            return
        r = dns.message.make_response(q)
        r.flags |= dns.flags.AA
        client = addr[0]
        for opt in q.options:
            if isinstance(opt, dns.edns.ECSOption):
                client = opt.address
                r.use_edns(0, 0, 1232, options=[dns.edns.ECSOption(opt.address, opt.srclen,
                                                                   opt.srclen)])
        if self.reader is not None:
            try:
                self.reader.get(client)
            except ValueError:
                pass
        rrset = dns.rrset.RRset(q.question[0].name, dns.rdataclass.IN, dns.rdatatype.A)
        rrset.add(ANSWER, 20)
        r.answer.append(rrset)
        self.transport.sendto(r.to_wire(), addr)


async def serve(port: int, mmdb: str | None) -> None:
    reader = maxminddb.open_database(mmdb) if mmdb else None
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Responder(reader), local_addr=("127.0.0.1", port))
    print(f"pyresponder on 127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    import uvloop

    mmdb = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--mmdb" else None
    uvloop.run(serve(int(sys.argv[1]), mmdb))
