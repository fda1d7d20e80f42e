"""End-to-end fixtures: one small packaged title for the whole session, and clusters of
real service processes (control, origin, steering, appliances) on loopback."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from onebox.cluster import Cluster, ClusterConfig
from onebox.demo import fill_title, make_sample, read_manifest, register, wait_for_fleet
from onebox.procs import vcdn_argv
from tests.conftest import ROOT, require_tool
from vcdn.schemas import TitleManifest

T = TypeVar("T")
TITLE = "e2e"
ARTIFACTS = ROOT / "test-artifacts"


@dataclass(frozen=True)
class Packaged:
    root: Path  # an origin root holding TITLE
    manifest: TitleManifest

    @property
    def sha(self) -> dict[str, str]:
        return {f.path: f.sha256 for f in self.manifest.files}


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    """A 12 s title (360p + 240p, 2 s segments), packaged once by the real packager."""
    require_tool("ffmpeg")
    base = tmp_path_factory.mktemp("e2e-title")
    source = base / "source.mp4"
    asyncio.run(make_sample(source, 12, "640x360", rate=24))
    root = base / "origin"
    subprocess.run(
        vcdn_argv(
            "package", str(source), "--title", TITLE, "--ladder", "360,240",
            "--segment-seconds", "2", "--origin-root", str(root), "--preset", "veryfast", "-q",
        ),
        check=True, cwd=ROOT, timeout=120,
    )
    manifest = read_manifest(root, TITLE)
    assert manifest is not None
    return Packaged(root, manifest)


def seed_origin(data: Path, packaged: Packaged) -> None:
    """Give a cluster's origin the packaged title (as `vcdn package` would have)."""
    shutil.copytree(packaged.root / TITLE, data / "origin" / TITLE)


ClusterFactory = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def cluster_factory(
    tmp_path: Path, packaged: Packaged
) -> AsyncIterator[ClusterFactory]:
    """Start clusters with the title registered and filled; every one is stopped at the end."""
    started: list[Cluster] = []

    async def make(fill: bool = True, **overrides: Any) -> Cluster:
        cluster = await start_cluster(tmp_path / f"cluster{len(started)}", packaged, fill,
                                      **overrides)
        started.append(cluster)
        return cluster

    yield make
    await asyncio.gather(*(c.stop() for c in started))


class LoopThread:
    """An event loop in a thread, so one cluster can serve a whole module of async tests
    (each of which runs in its own loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], within: float = 180.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(within)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def start_cluster(data: Path, packaged: Packaged, fill: bool = True,
                        **overrides: Any) -> Cluster:
    """A started cluster with the packaged title registered (and filled everywhere)."""
    seed_origin(data, packaged)
    cluster = Cluster(ClusterConfig(data=data, **overrides))
    try:
        await cluster.start()
        async with aiohttp.ClientSession() as session:
            await register(session, cluster, TITLE)
            await wait_for_fleet(session, cluster)
            if fill:
                await fill_title(session, cluster, packaged.manifest, within=60)
    except BaseException:
        await cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def module_cluster(
    packaged: Packaged, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Three appliances in two sites, the title filled, shared by a module's tests."""
    runner = LoopThread()
    try:
        cluster = runner.run(
            start_cluster(tmp_path_factory.mktemp("cluster"), packaged, heartbeat_interval=0.5)
        )
        try:
            yield cluster
        finally:
            runner.run(cluster.stop())
    finally:
        runner.close()


def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
