"""PostgreSQL's share of a control benchmark: the CPU of the backends serving it.

A control server's database work runs in PostgreSQL backend processes, not in the server,
so a figure that counts only the server flatters PostgreSQL deployments. Each server
under test connects with an `application_name` of the run's own; its backends are found
in `pg_stat_activity` and their CPU read from /proc (the server is local). Backends that
appear during the run count in full; one that exits before the end is missed (asyncpg
keeps pooled connections for minutes, longer than a run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from bench.procstat import cpu_seconds


async def backends(base: str, application: str) -> list[int]:
    conn = await asyncpg.connect(base, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", application
        )
    finally:
        await conn.close()
    return [int(r[0]) for r in rows]


@dataclass
class BackendCpu:
    """CPU of one run's backends between `start` and `stop`."""

    base: str
    application: str
    before: dict[int, float] = field(default_factory=dict)

    async def start(self) -> None:
        self.before = {pid: cpu_seconds(pid) for pid in await backends(self.base, self.application)}

    async def stop(self) -> tuple[float, int]:
        """(CPU seconds used since `start`, how many backends)."""
        pids = await backends(self.base, self.application)
        used = sum(max(0.0, cpu_seconds(pid) - self.before.get(pid, 0.0)) for pid in pids)
        return used, len(pids)
