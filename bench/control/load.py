"""The load: N simulated appliances, each registering once and then heartbeating every
`interval` seconds, phases spread evenly so that the server sees a steady N/interval
beats per second, as a real fleet would. Every loop is bounded by the run's duration."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import aiohttp

from vcdn.control_client import APPLIANCE_PAGE

CONNECTIONS: Final = 256  # appliances keep connections alive; this many at most at once


@dataclass
class Result:
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    polls: list[float] = field(default_factory=list)  # GET /appliances, as steering polls

    def pct(self, p: float, values: list[float] | None = None) -> float:
        data = self.latencies if values is None else values
        if not data:
            return float("nan")
        ordered = sorted(data)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def heartbeat_body(rng: random.Random, titles: int, per_beat: int) -> dict[str, object]:
    """A realistic beat: load, disk, and request counts for a few (Zipf-ish) titles."""
    chosen = {f"title-{int(titles * rng.random() ** 3):04d}" for _ in range(per_beat)}
    return {
        "state": "healthy",
        "load": {
            "requests_per_s": rng.uniform(0, 500),
            "bytes_per_s": rng.uniform(0, 1e9),
            "connections": rng.randint(0, 5000),
        },
        "free_bytes": rng.randint(0, 10**12),
        "used_bytes": rng.randint(0, 10**12),
        "objects": rng.randint(0, 10**5),
        "bytes_served": rng.randint(0, 10**13),
        "hit_ratio": rng.random(),
        "title_requests": {t: rng.randint(1, 200) for t in chosen},
    }


def title_manifest(title: str) -> dict[str, object]:
    """A one-file title: beats count only titles of the catalog, so the bench's exist."""
    return {
        "title": title, "duration": 4.0, "segment_seconds": 4.0, "format": "fmp4",
        "single_file": False, "renditions": [], "version": 1,
        "files": [{"path": "seg.m4s", "size": 1000, "sha256": "0" * 64}],
        "created_at": "2026-12-01T00:00:00Z",
    }


async def register_all(base: str, token: str, appliances: int, titles: int = 500) -> list[str]:
    """Register the catalog, enrol and register the fleet (as the operator); each
    appliance's own bound token, by index."""
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=32)
    tokens = [""] * appliances
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        sem = asyncio.Semaphore(32)

        async def post(path: str, body: dict[str, object]) -> dict[str, object]:
            async with sem, session.post(f"{base}{path}", json=body) as resp:
                if resp.status not in (200, 201):
                    raise RuntimeError(f"POST {path} failed: {resp.status} {await resp.text()}")
                answer: dict[str, object] = await resp.json()
                return answer

        await asyncio.gather(
            *(post("/api/v1/titles", title_manifest(f"title-{t:04d}")) for t in range(titles))
        )

        async def one(i: int) -> None:
            body = {
                "id": f"app-{i:05d}",
                "site": f"site-{i % 50:02d}",
                "public_url": f"http://10.{i // 250}.{i % 250}.1:8080",
                "capacity_bytes": 10 * 1024**4,
                "asn": 64500 + i % 50,
                "prefixes": [f"100.{i // 250}.{i % 250}.0/24"],
            }
            enrolment = {"id": body["id"], "site": body["site"], "prefixes": body["prefixes"]}
            tokens[i] = str((await post("/api/v1/enrollments", enrolment))["token"])
            await post("/api/v1/appliances", body)

        await asyncio.gather(*(one(i) for i in range(appliances)))
    return tokens


async def heartbeat_load(
    base: str | list[str],
    tokens: Sequence[str],
    *,
    appliances: int,
    interval: float,
    seconds: float,
    titles: int = 500,
    per_beat: int = 8,
    seed: int = 1,
    poll_every: float = 0.0,
) -> Result:
    bases = [base] if isinstance(base, str) else base  # replicas share the fleet evenly
    rng = random.Random(seed)
    bodies = [heartbeat_body(rng, titles, per_beat) for _ in range(64)]
    result = Result()
    auth = [{"Authorization": f"Bearer {t}"} for t in tokens]  # appliance i: auth[i % len]
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def beat(i: int) -> None:
            url = f"{bases[i % len(bases)]}/api/v1/appliances/app-{i:05d}/heartbeat"
            start = time.perf_counter()
            try:
                body = bodies[i % len(bodies)]
                async with session.put(url, json=body, headers=auth[i % len(auth)]) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                result.errors[type(exc).__name__] = result.errors.get(type(exc).__name__, 0) + 1
                return
            result.latencies.append(time.perf_counter() - start)
            if status == 200:
                result.ok += 1
            else:
                result.errors[str(status)] = result.errors.get(str(status), 0) + 1

        async def poll() -> None:
            """GET /appliances every `poll_every` seconds, a page at a time, as steering
            does (vcdn.control_client.APPLIANCE_PAGE); one sample is the whole list."""
            while True:
                await asyncio.sleep(poll_every)
                start = time.perf_counter()
                after: str | None = None
                try:
                    for _ in range(1000):
                        url = f"{bases[0]}/api/v1/appliances?limit={APPLIANCE_PAGE}"
                        if after is not None:
                            url += f"&after={after}"
                        async with session.get(url, headers=auth[0]) as resp:
                            body = await resp.read()
                            if resp.status != 200:
                                break
                        after = json.loads(body).get("next")
                        if after is None:
                            result.polls.append(time.perf_counter() - start)
                            break
                except (aiohttp.ClientError, TimeoutError):
                    pass

        poller = asyncio.create_task(poll()) if poll_every > 0 else None
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        step = interval / appliances
        tasks: set[asyncio.Task[None]] = set()
        k = 0
        while True:
            due = t0 + k * step
            if due - t0 >= seconds:
                break
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(beat(k % appliances))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            result.sent += 1
            k += 1
        if poller is not None:
            poller.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        result.elapsed = loop.time() - t0
    return result
