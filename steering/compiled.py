"""The DNS mapping compiled into lookup tables, so that a steered query never touches
MaxMind or the prefix table: pure, no I/O (the MaxMind readers are only read).

A query with an ECS source prefix of L bits (24 for IPv4; 48 or 56 for IPv6) is answered
from the client's /L alone, so the decision is a function of the /L. Compilation has two
stages, each rebuilt only when its inputs change:

1. *Leaves* (prefix table, MaxMind data): the address space is cut into CIDR blocks
   inside which the prefix match, its scope and the MaxMind City and ASN records (with
   their network lengths) are constant. The cut starts at /0 and halves a block while any
   lookup at its first address reports a network longer than the block (a network that
   starts there and holds the first address of a block it is no longer than holds the
   whole block); it stops at /L, where the reference looks up the /L's first address
   too. The blocks become a sorted array of starts (bisected per query) and the index of
   their *inputs* (the distinct tuples of lookup results).
2. *Plans* (appliances, health, load): for each distinct input tuple, the reference's own
   `_site_order` gives the site ranking and scope; the shedding and reach of `select` are
   resolved once, leaving per query only the rendezvous scores of the client's /L over
   the first site's appliances (`steering.spread`, by spare capacity), which no table
   of 2^24 subnets per site could hold.

The answer for (family, chosen addresses, scope) is encoded once and kept; a query costs
parsing, one bisection, the hashes of one site and splicing its ID, RD bit, name as sent
and ECS address into the prebuilt bytes. Plans whose sites shed a share of their clients
(0 < share < 1, the overloaded case) call the reference `select` per client instead: they
are exact, only not precompiled. `tests/steering/test_compiled.py` checks the compiled
bytes against the reference on every MaxMind test network and a random sample.
"""

from __future__ import annotations

import bisect
import ipaddress
import socket
import time
from dataclasses import dataclass
from math import log2
from typing import Final

from xxhash import xxh3_64_intdigest

from steering import dns_wire, spread
from steering.prefixes import BITS, PrefixTable
from steering.select import (
    SPREAD_BITS,
    Client,
    GeoLookup,
    Policy,
    _matters,
    _reach,
    _shed_share,
    _site_order,
    select,
)
from steering.view import Node, Site, SteeringView

# ECS source lengths compiled per IP version: resolvers send /24 and /56 (RFC 7871 §11.1);
# /48 is what many send for IPv6 in practice.
SOURCES: Final = {4: (24,), 6: (48, 56)}
MAX_TEMPLATES: Final = 100_000
MAX_FALLBACK: Final = 100_000
MAX_MEMO: Final = 1_000  # templates per plan and QTYPE, by the ranked indexes chosen
MAX_KNOWN: Final = 1_024  # validated query layouts (`CompiledMap.answer_udp`)

Inputs = tuple[object, ...]
# A prebuilt response: (the 10 header bytes after the ID, by the query's RD bit), the bytes
# between the question and the echoed ECS address, the size without the question.
_Template = tuple[tuple[bytes, bytes], bytes, int]
# The common plan's first site, per QTYPE: its addresses, (seed, inverse weight) per
# appliance, the range of their indexes, templates by the indexes chosen.
_Top = tuple[list[str], list[tuple[int, float]], range, dict[tuple[int, ...], _Template]]
# Per block of inputs: the plan's `top` for A and for AAAA (None: not the common case),
# and the plan (None: not compiled, `select` answers).
_Block = tuple["_Top | None", "_Top | None", "_Plan | None"]
# QTYPE, QCLASS IN, then the OPT RR's root name and TYPE 41: what a steered query holds
# right after its name.
_QTYPES: Final = {b"\x00\x01\x00\x01\x00\x00\x29": 1, b"\x00\x1c\x00\x01\x00\x00\x29": 28}


def _text(version: int, addr: int) -> str:
    if version == 4:
        return socket.inet_ntop(socket.AF_INET, addr.to_bytes(4, "big"))
    return str(ipaddress.IPv6Address(addr))  # the text `Client.text` gives MaxMind


@dataclass(frozen=True)
class Leaves:
    """Stage 1 for one (IP version, source length): sorted block starts and their inputs."""

    version: int
    source: int
    starts: list[int]
    index: list[int]  # per block, into `inputs`
    inputs: list[Inputs]
    reps: list[int]  # per input tuple, the first address of one block holding it


def build_leaves(version: int, source: int, prefixes: PrefixTable[tuple[str, ...]],
                 geo: GeoLookup | None) -> Leaves:
    """Cut the address space of `version` into blocks of constant lookup results."""
    width = BITS[version]
    starts: list[int] = []
    index: list[int] = []
    inputs: list[Inputs] = []
    reps: list[int] = []
    seen: dict[Inputs, int] = {}
    lookup = prefixes.lookup
    # (start, length, MaxMind results known to hold for the whole block, or None)
    stack: list[tuple[int, int, tuple[object, int, int, int] | None]] = [(0, 0, None)]
    while stack:
        start, plen, known = stack.pop()
        m = lookup(version, start)
        if m.value:
            key: Inputs = ("p", m.value, min(m.scope, source))
            need = m.scope
        else:
            if known is None:
                ip = _text(version, start)
                loc, loc_len = geo.location(ip) if geo else (None, 0)
                number, asn_len = geo.asn(ip) if geo else (0, 0)
                known = (loc, loc_len, number, asn_len)
            loc, loc_len, number, asn_len = known
            key = ("g", m.scope, loc, loc_len, number, asn_len)
            need = max(m.scope, loc_len, asn_len)
        if need > plen and plen < source:
            half = 1 << (width - plen - 1)
            # MaxMind networks no longer than this block hold its halves too: only the
            # prefix table made it split, so its halves skip the MaxMind lookups.
            inherit = known if known is not None and max(known[1], known[3]) <= plen else None
            stack.append((start | half, plen + 1, inherit))
            stack.append((start, plen + 1, inherit))  # popped first: blocks come out in order
            continue
        i = seen.get(key)
        if i is None:
            i = seen[key] = len(inputs)
            inputs.append(key)
            reps.append(start)
        if index and index[-1] == i:
            continue  # same inputs as the block before: one interval
        starts.append(start)
        index.append(i)
    return Leaves(version, source, starts, index, inputs, reps)


class _SitePlan:
    """One site of a plan: its appliances and what ranking them by a /L needs."""

    __slots__ = ("inverse", "nodes", "ranked", "saturated", "seeds")

    def __init__(self, nodes: tuple[Node, ...], ranked: bool, saturation: float) -> None:
        self.nodes = nodes
        self.ranked = ranked
        self.seeds = [spread.seed(n.id) for n in nodes]
        self.inverse = [spread.inverse_weight(n.utilization) for n in nodes]
        self.saturated = [n.utilization >= saturation for n in nodes]

    def order(self, key: bytes) -> list[Node]:
        """`select._rank_site` for DNS (no title): `spread.order` on the client's key,
        then saturated appliances last."""
        if not self.ranked:
            return list(self.nodes)
        idx = spread.order(key, self.seeds, self.inverse)
        sat = self.saturated
        nodes = self.nodes
        return [nodes[j] for j in idx if not sat[j]] + [nodes[j] for j in idx if sat[j]]


class _Plan:
    """The part of `select` that does not depend on the client's /L, resolved once."""

    __slots__ = ("chosen", "scope", "sites", "top")

    def __init__(self, sites: list[_SitePlan], scope: int, answers: int) -> None:
        self.sites = sites
        self.scope = scope
        # Without any ranked site the answer is the same for every /L of the plan.
        self.chosen: dict[int, tuple[str, ...]] | None = None
        if not any(s.ranked for s in sites):
            self.chosen = {f: self.pick(b"", f, answers) for f in (4, 6)}
        # The common case: the first site alone fills the answer (enough appliances with a
        # distinct address of the family, none saturated), so the answer is its top
        # `answers` by score. Per QTYPE (1: A, 28: AAAA): the addresses, each appliance's
        # (seed, inverse weight), the range of their indexes, and a memo of response
        # templates by the indexes chosen (`CompiledMap.answer_udp`).
        self.top: dict[int, _Top] = {}
        first = sites[0] if sites else None
        if first is not None and first.ranked and not any(first.saturated):
            for f, qtype in ((4, 1), (6, 28)):
                addrs = [(n.addrs4 if f == 4 else n.addrs6)[:1] for n in first.nodes]
                flat = [a[0] for a in addrs if a]
                if len(flat) == len(addrs) >= answers and len(set(flat)) == len(flat):
                    self.top[qtype] = (flat, list(zip(first.seeds, first.inverse,
                                                      strict=True)), range(len(flat)), {})

    def pick(self, key: bytes, family: int, answers: int) -> tuple[str, ...]:
        chosen: list[str] = []
        for site in self.sites:
            for node in site.order(key):
                for a in node.addrs4[:1] if family == 4 else node.addrs6[:1]:
                    if a not in chosen:
                        chosen.append(a)
                if len(chosen) >= answers:
                    return tuple(chosen)
        return tuple(chosen)


def _site_order_of(key: Inputs, rep: Client, view: SteeringView, geo: GeoLookup | None,
                   policy: Policy, memo: dict[tuple[object, ...], tuple[list[Site], bool, bool]],
                   ) -> tuple[list[Site], int] | None:
    """`select._site_order` for a block's inputs: the site order is computed once per
    distinct (prefix sites) or (ASN, location), the scope from the block's lengths."""
    if key[0] == "p":
        group: tuple[object, ...] = ("p", key[1])
    else:
        group = ("g", key[2], key[4])
    got = memo.get(group)
    if got is None:
        primary, reason, _scope = _site_order(rep, view, geo, policy)
        # The order of `reason` "asn" with one ASN site or no location ignores loc_len.
        loc_matters = reason != "asn" or (len(primary) > 1 and key[2] is not None)
        # Prefix sites absent from the view fall through to MaxMind: not compiled.
        got = memo[group] = (primary, loc_matters, key[0] != "p" or reason == "prefix")
    primary, loc_matters, compiled = got
    if not compiled:
        return None
    if key[0] == "p":
        scope = int(key[2])  # type: ignore[call-overload]
    else:
        _g, m_scope, _loc, loc_len, _n, asn_len = key
        scope = max(m_scope, asn_len)  # type: ignore[type-var]
        if loc_matters:
            scope = max(scope, loc_len)  # type: ignore[type-var]
    return primary, scope  # type: ignore[return-value]


def _plan(primary: list[Site], scope: int, version: int, source: int, view: SteeringView,
          policy: Policy, depth: int, site_plans: dict[tuple[str, bool], _SitePlan],
          ) -> _Plan | None:
    """`select` up to the first use of the client's bucket; None when shedding needs it."""
    scope = min(scope, source)
    chosen = {s.name for s in primary}
    if primary:
        primary = primary + [view.sites[n] for n in view.neighbours[primary[0].name]
                             if n not in chosen]
    key_bits = max(scope, min(SPREAD_BITS[version], source))
    ordered = []
    pending = []
    for site in primary:
        share = _shed_share(site.utilization, policy.saturation)
        if 0.0 < share < 1.0:
            return None
        if share:  # 1.0: every client of this site goes to the next one
            pending.append(site)
        else:
            ordered.append(site)
            ordered.extend(pending)
            pending = []
    ordered.extend(pending)
    reach = _reach(ordered, depth, view)
    last = max(reach.values())
    varied = False
    sites: list[_SitePlan] = []
    for i, site in enumerate(ordered):
        ranked = i <= last and len(site.nodes) > 1
        varied = varied or (ranked and _matters(ordered, i, reach, 2))
        sp = site_plans.get((site.name, ranked))
        if sp is None:
            sp = site_plans[(site.name, ranked)] = _SitePlan(site.nodes, ranked,
                                                             policy.saturation)
        sites.append(sp)
        if i >= last:
            break  # the answer never reaches further
    return _Plan(sites, key_bits if varied else scope, depth)


@dataclass
class CompiledTables:
    leaves: dict[tuple[int, int], Leaves]
    prefixes: PrefixTable[tuple[str, ...]]
    geo: GeoLookup | None


def build_tables(view: SteeringView, geo: GeoLookup | None,
                 previous: CompiledTables | None = None) -> CompiledTables:
    """Stage 1, reused from `previous` when the prefixes and MaxMind data are the same."""
    if (previous is not None and previous.geo is geo
            and previous.prefixes.same_entries(view.prefixes)):
        return previous
    leaves = {(v, s): build_leaves(v, s, view.prefixes, geo)
              for v, sources in SOURCES.items() for s in sources}
    return CompiledTables(leaves, view.prefixes, geo)


class CompiledMap:
    """Answers steered A/AAAA queries carrying ECS at a compiled source length."""

    __slots__ = ("_answers", "_fallback", "_geo", "_known", "_lookup", "_policy", "_shapes",
                 "_templates", "_ttl", "_udp_payload", "_view", "build_ms", "tables")

    def __init__(self, view: SteeringView, geo: GeoLookup | None, policy: Policy, *,
                 answers: int, ttl: int, udp_payload: int,
                 tables: CompiledTables | None = None) -> None:
        self._view = view
        self._geo = geo
        self._policy = policy
        self._answers = answers
        self._ttl = ttl
        self._udp_payload = udp_payload
        started = time.perf_counter()
        self.tables = tables if tables is not None else build_tables(view, geo)
        self._templates: dict[tuple[object, ...], tuple[tuple[bytes, bytes], bytes, int]] = {}
        self._fallback: dict[tuple[int, int, int], tuple[tuple[str, ...], int]] = {}
        # By the ECS family and source bytes: (block starts, their blocks, IP version,
        # source length). The starts are the /L's address bytes as ECS carries them: all
        # of one length, so they sort as the numbers do, and a query's bytes are bisected
        # as they came.
        self._lookup: dict[bytes, tuple[list[bytes], list[_Block], int, int]] = {}
        # By the bytes from the OPT RDLEN to the ECS scope: (query size without the name,
        # block starts, their blocks, the ECS family and source bytes).
        self._shapes: dict[bytes, tuple[int, list[bytes], list[_Block], bytes]] = {}
        # By the 23 bytes from QTYPE to the ECS scope of a query `answer_udp` has checked
        # once: what it needs from them (see `_layout`).
        self._known: dict[bytes, tuple[int, list[bytes], list[_Block], int, int, int]] = {}
        orders: dict[tuple[object, ...], tuple[list[Site], bool, bool]] = {}
        site_plans: dict[tuple[str, bool], _SitePlan] = {}
        for (version, source), lv in self.tables.leaves.items():
            blocks: list[_Block] = []
            for key, rep in zip(lv.inputs, lv.reps, strict=True):
                got = _site_order_of(key, Client(version, rep, source), view, geo, policy,
                                     orders)
                plan = None if got is None else _plan(
                    got[0], got[1], version, source, view, policy, answers, site_plans)
                blocks.append((None, None, None) if plan is None else
                              (plan.top.get(1), plan.top.get(28), plan))
            per_block = [blocks[i] for i in lv.index]
            shift = BITS[version] - source
            ecs_head = bytes([0, 1 if version == 4 else 2, source])
            raw = source // 8
            starts = [(a >> shift).to_bytes(raw, "big") for a in lv.starts]
            self._lookup[ecs_head] = (starts, per_block, version, source)
            # The plain query's bytes from the OPT RDLEN to the ECS scope: one option,
            # the ECS one, of this family and source length, scope 0 (RFC 7871 §6).
            shape = ((8 + raw).to_bytes(2, "big") + b"\x00\x08" + (4 + raw).to_bytes(2, "big")
                     + ecs_head + b"\x00")
            self._shapes[shape] = (35 + raw, starts, per_block, ecs_head)
        self.build_ms = (time.perf_counter() - started) * 1000

    def _layout(self, q: bytes, n: int) -> tuple[int, list[bytes], list[_Block], int, int,
                                                  int] | None:
        """What `answer_udp` needs from the bytes after the name (QTYPE to ECS scope), or
        None when they are not the plain shape: the query size without the name, the
        block starts and blocks of its ECS family and source, the QTYPE, its index in a
        block and the largest response it may receive over UDP. Kept by those bytes (at
        most `MAX_KNOWN` layouts: resolvers send a handful of payload sizes and flags;
        past that the rest are checked every time), so a query checks them with one
        lookup."""
        shape = self._shapes.get(q[25 + n : 35 + n])
        if shape is None or q[22 + n]:  # not the plain OPT and ECS, or EDNS version > 0
            return None
        qtype = _QTYPES.get(q[12 + n : 19 + n])
        if qtype is None:
            return None
        size, starts, blocks, _head = shape
        payload = (q[19 + n] << 8) | q[20 + n]
        got = (size, starts, blocks, qtype, 0 if qtype == 1 else 1, max(512, payload))
        if len(self._known) < MAX_KNOWN:
            self._known[q[12 + n : 35 + n]] = got
        return got

    def answer_udp(self, q: bytes, n: int) -> bytes | None:
        """The whole response to a UDP query already known to be a standard query (byte 2
        is 0 or 1: no QR, opcode, AA, TC; RD either way), with one question and one
        additional record, whose name (`n` bytes at offset 12) is a service name; None
        unless it has exactly the plain shape `dns_wire.parse` accepts with one ECS
        option at a compiled length (then the general path answers). It answers as
        `Responder.answer` does after `parse` and `answer`, reading the fields at their
        fixed offsets instead of parsing:

            12 header | n name | 2 qtype | 2 qclass 1 | 00 0029 | 2 payload | ext-rcode
            | version 0 | 2 flags | RDLEN | 0008 | OPTLEN | family | source | scope 0 | addr

        In the common case (the first site alone fills the answer) this is one dict
        lookup for the layout, one bisection, the rendezvous scores of that site's
        appliances and one join of prebuilt bytes: no objects but the scores.
        """
        layout = self._known.get(q[12 + n : 35 + n]) or self._layout(q, n)
        if layout is None:
            return None
        size, starts, blocks, qtype, which, limit = layout
        if len(q) != size + n:
            return None
        # The compiled lengths are whole bytes: the address bytes are the client's /L, and
        # `spread.key` of it.
        addr = q[35 + n :]
        block = blocks[bisect.bisect_right(starts, addr) - 1]
        top = block[which]
        if top is None:  # the rarer plans: the parsed path's general code
            rest = self.answer(q, q[12 : 16 + n], qtype, q[31 + n :], limit)
            return None if rest is None else q[:2] + rest
        addrs, pairs, indexes, memo = top
        # `spread.score` inline (a call less per appliance; a loop costs less than a list
        # comprehension's function).
        scores = []
        for s, w in pairs:
            scores.append((log2(xxh3_64_intdigest(addr, s) + 0.5) - 64.0) * w)
        # The best scores' indexes: sorting the floats alone is cheaper than sorting the
        # indexes by them. With distinct values among the best this is the reference's
        # stable order (an equal value further down takes the first index, as that order
        # does); equal values among the best repeat an index, which no memo key holds.
        answers = self._answers
        best = sorted(scores)
        if answers == 2:
            picked: tuple[int, ...] = (scores.index(best[-1]), scores.index(best[-2]))
        else:
            picked = tuple(map(scores.index, best[: -1 - answers : -1]))
        t = memo.get(picked)
        if t is None:
            picked = tuple(sorted(indexes, key=scores.__getitem__, reverse=True)[:answers])
            chosen = tuple([addrs[j] for j in picked])
            scope = block[2].scope  # type: ignore[union-attr]  # `top` is the plan's
            t = self._templates.get((qtype, chosen, scope, q[31 + n : 34 + n]))
            if t is None:
                t = self._template(q, q[12 : 16 + n], qtype, chosen, scope, q[31 + n :])
            if len(memo) < MAX_MEMO:
                memo[picked] = t
        heads, tail, fixed = t
        if fixed + 4 + n > limit:
            return None  # RFC 6891 §6.2.5: the careful path sets TC
        return b"".join((q[:2], heads[q[2] & 1], q[12 : 16 + n], tail, addr))

    def _reference(self, version: int, addr: int, source: int,
                   family: int) -> tuple[tuple[str, ...], int]:
        key = (version, addr, source * 8 + family)
        done = self._fallback.get(key)
        if done is None:
            d = select(Client(version, addr, source), self._view, self._geo, self._policy,
                       depth=self._answers)
            chosen: list[str] = []
            for node in d.nodes:
                for a in node.addrs4[:1] if family == 4 else node.addrs6[:1]:
                    if a not in chosen:
                        chosen.append(a)
                if len(chosen) >= self._answers:
                    break
            if len(self._fallback) >= MAX_FALLBACK:
                self._fallback = {}
            done = self._fallback[key] = (tuple(chosen), d.scope)
        return done

    def answer(self, q: bytes, question: bytes, qtype: int, ecs: bytes,
               payload: int) -> bytes | None:
        """The response after its 2 ID bytes, for a parsed steered query (IN class, A or
        AAAA, service name checked by the caller) with a valid ECS option; None when the
        compiled path does not apply (other source length, NODATA, too big for UDP)."""
        head = ecs[:3]  # family and source length
        entry = self._lookup.get(head)
        if entry is None:
            return None
        starts, blocks, version, source = entry
        raw = ecs[4:]
        # The compiled lengths are whole bytes: the address bytes are the client's /L.
        plan = blocks[bisect.bisect_right(starts, raw) - 1][2]
        family = 4 if qtype == 1 else 6
        if plan is None:
            net = int.from_bytes(raw, "big")
            chosen, scope = self._reference(version, net << (BITS[version] - source), source,
                                            family)
        elif plan.chosen is not None:
            chosen, scope = plan.chosen[family], plan.scope
        else:
            scope = plan.scope
            top = plan.top.get(qtype)
            # The address bytes are `spread.key` of the /L.
            if top is None:
                chosen = plan.pick(raw, family, self._answers)
            else:
                addrs, pairs, indexes, _memo = top
                scores = [spread.score(raw, s, w) for s, w in pairs]
                idx = sorted(indexes, key=scores.__getitem__, reverse=True)
                chosen = tuple([addrs[j] for j in idx[: self._answers]])
        if not chosen:
            return None
        t = self._templates.get((qtype, chosen, scope, head))
        if t is None:
            t = self._template(q, question, qtype, chosen, scope, ecs)
        heads, tail, fixed = t
        if fixed + len(question) > payload:
            return None  # RFC 6891 §6.2.5: the careful path sets TC
        return heads[q[2] & 1] + question + tail + raw

    def _template(self, q: bytes, question: bytes, qtype: int, chosen: tuple[str, ...],
                  scope: int, ecs: bytes) -> _Template:
        """The same bytes `Responder._fill_steered` builds, split around the question and
        the echoed ECS address."""
        af = socket.AF_INET if qtype == 1 else socket.AF_INET6
        answers = tuple((qtype, self._ttl, socket.inet_pton(af, a)) for a in chosen)
        echo = ecs[:3] + bytes([scope]) + ecs[4:]
        full = dns_wire.build_response(q[:3], question, answers=answers,
                                       edns_payload=self._udp_payload, ecs=echo)
        raw = len(ecs) - 4
        heads = (bytes([full[2] & 0xFE]) + full[3:12], bytes([full[2] | 1]) + full[3:12])
        tail = full[12 + len(question) : len(full) - raw]
        # The answers point at offset 12: no byte depends on the name. `fixed`: the
        # response's size without the question.
        t = (heads, tail, 12 + len(tail) + raw)
        if len(self._templates) >= MAX_TEMPLATES:
            self._templates = {}
        self._templates[(qtype, chosen, scope, ecs[:3])] = t
        return t
