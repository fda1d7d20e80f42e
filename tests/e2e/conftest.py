"""End-to-end fixtures: one small packaged title for the whole session, and clusters of
real service processes (control, origin, steering, appliances) on loopback."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import ROOT, require_tool
from vcdn.cluster import Cluster, ClusterConfig
from vcdn.demo import fill_title, make_sample, read_manifest, register, wait_for_fleet
from vcdn.procs import vcdn_argv
from vcdn.schemas import TitleManifest

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

    async def make(fill: bool = True, **overrides: object) -> Cluster:
        data = tmp_path / f"cluster{len(started)}"
        seed_origin(data, packaged)
        config = ClusterConfig(data=data, **overrides)  # type: ignore[arg-type]
        cluster = Cluster(config)
        started.append(cluster)
        await cluster.start()
        async with aiohttp.ClientSession() as session:
            body = (data / "origin" / TITLE / "manifest.json").read_bytes()
            await register(session, cluster, body)
            await wait_for_fleet(session, cluster)
            if fill:
                await fill_title(session, cluster, packaged.manifest, within=60)
        return cluster

    yield make
    await asyncio.gather(*(c.stop() for c in started))


def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
