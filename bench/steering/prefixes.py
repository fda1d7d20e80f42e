"""Longest-prefix match: the stdlib approach steering uses vs the pytricia radix tree.

    cd /work/main && .venv/bin/python -m bench.steering.prefixes

pytricia is not a vcdn dependency; install it into the venv to include it
(`.venv/bin/pip install pytricia`). Prints microseconds per lookup for tables of
realistic ISP prefix lengths (/12../24 IPv4).
"""

from __future__ import annotations

import ipaddress
import random
import time

from steering.prefixes import PrefixTable


def make_prefixes(n: int, rng: random.Random) -> list[str]:
    out = set()
    while len(out) < n:
        plen = rng.choice([12, 14, 16, 16, 18, 19, 20, 20, 21, 22, 22, 23, 24, 24, 24])
        out.add(str(ipaddress.ip_network((rng.getrandbits(32), plen), strict=False)))
    return sorted(out)


def timeit(fn, addrs: list, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for a in addrs:
            fn(a)
        best = min(best, time.perf_counter() - t)
    return best / len(addrs) * 1e6


def main() -> None:
    rng = random.Random(5)
    print(f"{'prefixes':>9} {'vcdn dict-per-length (us)':>26} {'pytricia (us)':>14} "
          f"{'ipaddress scan (us)':>20}")
    for n in (100, 1000, 10000, 100000):
        prefixes = make_prefixes(n, rng)
        table = PrefixTable((p, i) for i, p in enumerate(prefixes))
        ints = [rng.getrandbits(32) for _ in range(20000)]
        ours = timeit(lambda a, t=table: t.lookup(4, a), ints)
        try:
            import pytricia

            trie = pytricia.PyTricia(32)
            for i, p in enumerate(prefixes):
                trie[p] = i
            texts = [str(ipaddress.IPv4Address(a)) for a in ints]
            # pytricia answers the value only; the ECS scope would need more calls.
            tri = f"{timeit(trie.get, texts):.2f}"
        except ImportError:
            tri = "not installed"
        nets = [ipaddress.ip_network(p) for p in prefixes]
        few = [ipaddress.IPv4Address(a) for a in ints[:200]] if n <= 10000 else []
        def scan_one(a: ipaddress.IPv4Address, nets: list = nets) -> object:  # type: ignore[type-arg]
            return max((x for x in nets if a in x), key=lambda x: x.prefixlen, default=None)

        scan = f"{timeit(scan_one, few, 1):.1f}" if few else "-"
        print(f"{n:>9} {ours:>26.2f} {tri:>14} {scan:>20}")


if __name__ == "__main__":
    main()
