"""Property: any set of ranges, asked of a cold object (streamed from the growing fill)
or of a stored one, comes back as parts that reassemble to exactly those bytes."""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.app import EDGE_KEY, make_app
from tests import byteranges
from tests.edge.conftest import edge_settings, settle, signed
from tests.edge.scripted_origin import Script, ScriptedOrigin
from vcdn.httpserve.multipart import boundary_of
from vcdn.ranges import parse_range

SIZE = 50_000
DATA = os.urandom(SIZE)

spans = st.lists(
    st.tuples(st.integers(0, SIZE + 100), st.integers(0, 2000)).map(lambda t: (t[0], t[0] + t[1])),
    min_size=1,
    max_size=6,
)


async def _scenario(ranges: list[tuple[int, int]]) -> None:
    header = "bytes=" + ",".join(f"{a}-{b}" for a, b in ranges)
    try:
        expected = parse_range(header, SIZE)
    except Exception:
        expected = []  # nothing satisfiable: 416
    origin = ScriptedOrigin()
    origin.scripts["/v/demo/p.m4s"] = Script(
        DATA, pieces=5, delay=0.002, headers={"Cache-Control": "max-age=60"}
    )
    with tempfile.TemporaryDirectory() as tmp:
        up = TestServer(origin.app)
        await up.start_server()
        edge = TestServer(make_app(edge_settings(Path(tmp), str(up.make_url("")).rstrip("/"))))
        await edge.start_server()
        try:
            async with aiohttp.ClientSession() as s:
                for _ in ("miss", "hit"):
                    async with s.get(
                        edge.make_url(signed("p.m4s")), headers={"Range": header}
                    ) as r:
                        body = await r.read()
                        ctype = r.headers.get("Content-Type", "")
                        status = r.status
                    if not expected:
                        assert status == 416
                    elif len(expected) == 1:
                        e = expected[0]
                        assert status == 206 and body == DATA[e.first : e.last + 1]
                    else:
                        boundary = boundary_of(ctype)
                        assert status == 206 and boundary
                        parts = byteranges.split(ctype, body)
                        assert [p for _, p in parts] == [
                            DATA[e.first : e.last + 1] for e in expected
                        ]
                    await settle(edge.app)
            assert edge.app[EDGE_KEY].stats.misses == 1
        finally:
            await edge.close()
            await up.close()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spans)
def test_ranges_reassemble_on_miss_and_hit(ranges: list[tuple[int, int]]) -> None:
    asyncio.run(_scenario(ranges))
