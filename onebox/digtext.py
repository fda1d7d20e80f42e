"""A DNS answer as `dig` prints it, pure: so the demo shows what an operator would see.

dnspython's ``Message.to_text()`` prints the sections but not dig's header lines; this adds
them (opcode, status, id, flags, section counts) in dig's layout.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rrset


def dig_text(msg: dns.message.Message, *, server: str, port: int, query: str, rdtype: str,
             elapsed_ms: float) -> str:
    flags = dns.flags.to_text(msg.flags).lower()
    def rrs(section: list[dns.rrset.RRset]) -> int:
        # dig counts records, not RRsets; the OPT pseudo-record counts as additional.
        return sum(len(rrset) for rrset in section)

    counts = (
        f"QUERY: {len(msg.question)}, ANSWER: {rrs(msg.answer)}, "
        f"AUTHORITY: {rrs(msg.authority)}, ADDITIONAL: {rrs(msg.additional) + (msg.edns >= 0)}"
    )
    lines = [
        f"; <<>> vcdn up <<>> @{server} -p {port} {query} {rdtype}",
        ";; Got answer:",
        f";; ->>HEADER<<- opcode: {dns.opcode.to_text(msg.opcode())}, "
        f"status: {dns.rcode.to_text(msg.rcode())}, id: {msg.id}",
        f";; flags: {flags}; {counts}",
    ]
    if msg.edns >= 0:
        lines += ["", ";; OPT PSEUDOSECTION:", f"; EDNS: version: {msg.edns}, udp: {msg.payload}"]
    for name, section in (
        ("QUESTION", msg.question),
        ("ANSWER", msg.answer),
        ("AUTHORITY", msg.authority),
        ("ADDITIONAL", msg.additional),
    ):
        if not section:
            continue
        lines += ["", f";; {name} SECTION:"]
        for rrset in section:
            for line in rrset.to_text().splitlines():
                # dig separates the owner, TTL, class, type and data with tabs.
                if name == "QUESTION":
                    lines.append(";" + line.replace(" ", "\t"))
                else:
                    lines.append("\t".join(line.split(" ", 4)))
    lines += [
        "",
        f";; Query time: {elapsed_ms:.0f} msec",
        f";; SERVER: {server}#{port}({server}) (UDP)",
    ]
    return "\n".join(lines)
