"""The LL-HLS server rules (draft-pantos-hls-rfc8216bis §6.2.5.2, §6.2.5.1) as a table,
run against the origin (tests/origin/content/test_llhls.py) and through an edge
(tests/edge/test_llhls.py) on the same published state:

segments S+1..S+8 whole (parts and segment), segment S+9 open with parts 0 and 1, in
two renditions; one-second segments (target duration 1), three parts each."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.live_media import RENDITION, SLOT, LowLatencyMedia, ll_event_doc

S = SLOT
OTHER = "alt"
TOKEN = "llhls-rules-token"
PLAYLIST = f"{RENDITION}/index.m3u8"
Put = Callable[[str, bytes], Awaitable[int]]
Get = Callable[[str], Awaitable[tuple[int, bytes, dict[str, str]]]]


def event_document() -> bytes:
    doc = ll_event_doc()
    first = doc["renditions"][0]  # type: ignore[index]
    doc["renditions"] = [first, {**first, "name": OTHER, "playlist": f"{OTHER}/index.m3u8"}]
    return json.dumps(doc).encode()


async def publish(put: Put, media: LowLatencyMedia, msn: int, parts: range | None = None,
                  segment: bool = True) -> None:
    for rendition in (RENDITION, OTHER):
        for i in parts if parts is not None else range(len(media.parts[msn])):
            assert await put(f"{rendition}/part_{msn}_{i}.m4s", media.parts[msn][i]) == 201
        if segment:
            assert await put(f"{rendition}/seg_{msn}.m4s", media.segments[msn]) == 201


async def standard_state(put: Put, media: LowLatencyMedia) -> None:
    assert await put("live.json", event_document()) == 201
    for rendition in (RENDITION, OTHER):
        assert await put(f"{rendition}/init.mp4", media.init) == 201
    for msn in range(S + 1, S + 9):
        await publish(put, media, msn)
    await publish(put, media, S + 9, range(2), segment=False)


@dataclass(frozen=True)
class Row:
    name: str
    query: str
    status: int
    contains: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    cache_control: str | None = None
    #: Published 0.3 s after the request went out; the answer must wait for it.
    during: Callable[[Put, LowLatencyMedia], Awaitable[None]] | None = None
    min_seconds: float = 0.0
    max_seconds: float = 1.0
    tags: tuple[str, ...] = field(default=())


async def _next_part(put: Put, media: LowLatencyMedia) -> None:
    await publish(put, media, S + 9, range(2, 3), segment=False)


async def _finish_segment(put: Put, media: LowLatencyMedia) -> None:
    await publish(put, media, S + 9, range(2, 3), segment=True)


ROWS: tuple[Row, ...] = (
    Row("non-blocking reload: the low-latency tags, short freshness", "", 200,
        contains=("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.0,"
                  "PART-HOLD-BACK=1.002", "#EXT-X-PART-INF:PART-TARGET=0.33400",
                  f'#EXT-X-PART:DURATION=0.33333,URI="part_{S + 9}_0.m4s",INDEPENDENT=YES',
                  f'#EXT-X-PART:DURATION=0.33333,URI="part_{S + 9}_1.m4s"\n',
                  f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part_{S + 9}_2.m4s"',
                  f'#EXT-X-RENDITION-REPORT:URI="../{OTHER}/index.m3u8",LAST-MSN={S + 9},'
                  "LAST-PART=1", f"#EXT-X-MEDIA-SEQUENCE:{S + 1}"),
        cache_control="public, max-age=1"),
    Row("_HLS_msn of a kept segment answers at once, cacheable six target durations",
        f"_HLS_msn={S + 8}", 200, contains=(f"seg_{S + 8}.m4s",),
        cache_control="public, max-age=6"),
    Row("_HLS_msn/_HLS_part of a held part answers at once",
        f"_HLS_msn={S + 9}&_HLS_part=1", 200, contains=(f"part_{S + 9}_1.m4s",)),
    Row("the part after the last of a segment: part 0 of the next one answers it",
        f"_HLS_msn={S + 8}&_HLS_part=3", 200, contains=(f"part_{S + 9}_0.m4s",)),
    Row("the next part is waited for", f"_HLS_msn={S + 9}&_HLS_part=2", 200,
        contains=(f'URI="part_{S + 9}_2.m4s"\n',),
        during=_next_part, min_seconds=0.25, max_seconds=2.0, cache_control="public, max-age=6"),
    Row("the open segment is waited for", f"_HLS_msn={S + 9}", 200,
        contains=(f"seg_{S + 9}.m4s",), during=_finish_segment, min_seconds=0.25,
        max_seconds=2.0),
    Row("_HLS_part without _HLS_msn is a 400", "_HLS_part=1", 400,
        cache_control="public, max-age=1"),
    Row("more than two segments past the last is a 400", f"_HLS_msn={S + 12}", 400),
    Row("a malformed _HLS_msn is a 400", "_HLS_msn=abc", 400),
    Row("a negative _HLS_part is a 400", f"_HLS_msn={S + 9}&_HLS_part=-1", 400),
    Row("a repeated directive is a 400", f"_HLS_msn={S + 8}&_HLS_msn={S + 9}", 400),
    Row("an unknown _HLS_skip value is a 400", "_HLS_skip=NO", 400),
    Row("two segments ahead: held three target durations, then 503", f"_HLS_msn={S + 11}",
        503, min_seconds=2.9, max_seconds=4.5, cache_control="public, max-age=1",
        tags=("slow",)),
    Row("_HLS_skip=YES: a delta update skips what is older than CAN-SKIP-UNTIL",
        "_HLS_skip=YES", 200,
        contains=("#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n", f"#EXT-X-MEDIA-SEQUENCE:{S + 1}",
                  f"seg_{S + 3}.m4s"),
        absent=(f"seg_{S + 1}.m4s", f"seg_{S + 2}.m4s")),
    Row("_HLS_skip=v2 (no date ranges here) is the same delta update", "_HLS_skip=v2", 200,
        contains=("#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n",), absent=(f"seg_{S + 1}.m4s",)),
    Row("a blocking delta update", f"_HLS_skip=YES&_HLS_part=1&_HLS_msn={S + 9}", 200,
        contains=("#EXT-X-SKIP:SKIPPED-SEGMENTS=2\n", f"part_{S + 9}_1.m4s")),
    Row("other query parameters are ignored", f"_HLS_msn={S + 8}&cachebust=1", 200,
        contains=(f"seg_{S + 8}.m4s",)),
)


async def check_row(row: Row, get: Get, put: Put, media: LowLatencyMedia) -> None:
    path = PLAYLIST + (f"?{row.query}" if row.query else "")
    started = time.monotonic()
    task = asyncio.create_task(get(path))
    if row.during is not None:
        await asyncio.sleep(0.3)
        assert not task.done(), f"{row.name}: answered before what it waits for existed"
        await row.during(put, media)
    status, body, headers = await task
    took = time.monotonic() - started
    text = body.decode(errors="replace")
    assert status == row.status, f"{row.name}: {status} {text[:300]}"
    assert row.min_seconds <= took <= row.max_seconds, f"{row.name}: took {took:.2f} s"
    for needle in row.contains:
        assert needle in text, f"{row.name}: {needle!r} missing from\n{text}"
    for needle in row.absent:
        assert needle not in text, f"{row.name}: {needle!r} present in\n{text}"
    if row.cache_control is not None:
        assert headers.get("Cache-Control") == row.cache_control, (row.name, headers)
