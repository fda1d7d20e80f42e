"""`python -m bench.appliance`: manifest-fill throughput, ours against curl, same run.

One title of N files is served by nginx (an established static server, as the origin).
Two clients fetch all of it with the same concurrency and verify every file's sha256:

* ``curl``: ``curl --parallel`` writing the files, then ``sha256sum -c`` (an established
  HTTP client plus the coreutils digest: the floor of what a fill can cost);
* ``fill``: the appliance's `Filler`, which streams into staging while hashing, fsyncs,
  renames, then imports each file into the edge's cache store (copy, re-hash, fsync,
  SQLite index): the full crash-safe path.

Prints MB/s, wall and client CPU seconds for each, and the ratios to curl. Bounded: a
few repeats of a title of ``--files`` × ``--size`` bytes, loopback only.

    python -m bench.appliance                       # 24 × 2 MiB, concurrency 4, 3 repeats
    python -m bench.appliance --files 64 --size 512KiB --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from appliance.fill import Filler
from appliance.metrics import ApplianceMetrics
from appliance.settings import ApplianceSettings
from appliance.state import Status
from bench.edge.targets import nginx
from bench.record import Run
from edge.store import CacheStore, object_key
from onebox.procs import free_port
from vcdn.checksums import sha256_file
from vcdn.metrics import new_registry
from vcdn.schemas import FileEntry, FillManifest, FillTitle
from vcdn.settings import parse_bytes

TITLE = "bench"
TIMEOUT = 120.0


@dataclass
class Result:
    name: str
    wall: float
    cpu: float
    nbytes: int

    @property
    def mbps(self) -> float:
        return self.nbytes / self.wall / 1e6


def make_title(root: Path, files: int, size: int) -> list[FileEntry]:
    out = []
    folder = root / TITLE / "v"
    folder.mkdir(parents=True)
    for i in range(files):
        data = os.urandom(size)
        (folder / f"seg_{i:05d}.ts").write_bytes(data)
        out.append(FileEntry(f"v/seg_{i:05d}.ts", size, hashlib.sha256(data).hexdigest()))
    return out


def run_curl(base: str, entries: list[FileEntry], work: Path, concurrency: int) -> Result:
    dest = work / "curl"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir()
    args = ["curl", "--silent", "--no-progress-meter", "--fail",
            "--parallel", "--parallel-max", str(concurrency)]
    for e in entries:
        args += ["-o", str(dest / e.path.replace("/", "_")), f"{base}/{TITLE}/{e.path}"]
    sums = "".join(f"{e.sha256}  {e.path.replace('/', '_')}\n" for e in entries)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, check=True, timeout=TIMEOUT, stderr=subprocess.DEVNULL)
    subprocess.run(["sha256sum", "--quiet", "-c", "-"], input=sums.encode(), cwd=dest,
                   check=True, timeout=TIMEOUT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Result("curl", wall, cpu, sum(e.size for e in entries))


async def run_fill(origin: str, entries: list[FileEntry], work: Path, concurrency: int) -> Result:
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    settings = ApplianceSettings(
        id="bench", site="bench", public_url="http://127.0.0.1:1", cache_dir=cache,
        cache_capacity=10 * 1024**3, control_url="http://127.0.0.1:1", origin_url=origin,
        cache_free_floor=0, fill_concurrency=concurrency, auth="none",
    )
    store = CacheStore(cache, settings.cache_capacity)
    manifest = FillManifest(
        appliance="bench", generated_at=0.0, capacity_bytes=settings.cache_capacity,
        titles=[FillTitle(TITLE, 1.0, sum(e.size for e in entries), entries)],
    )
    status = Status("bench", "bench")
    metrics = ApplianceMetrics(new_registry())
    async with aiohttp.ClientSession() as session:
        filler = Filler(settings, store, session, status, metrics)
        cpu0, start = time.process_time(), time.perf_counter()
        ok = await asyncio.wait_for(filler.run(manifest, download=True), TIMEOUT)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    try:
        if not ok:
            raise RuntimeError("the fill did not complete")
        for e in entries:  # every stored byte, read back from the cache store's own file
            entry = store.get(object_key(TITLE, e.path))
            if entry is None or sha256_file(Path(store.file_str(entry))) != e.sha256:
                raise RuntimeError(f"the cache holds wrong bytes for {e.path}")
    finally:
        store.close()
    return Result("fill", wall, cpu, sum(e.size for e in entries))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.appliance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=24)
    p.add_argument("--size", default="2MiB")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    for tool in ("nginx", "curl", "sha256sum"):
        if shutil.which(tool) is None:
            print(f"bench.appliance needs '{tool}' (make bench-tools installs it).",
                  file=sys.stderr)
            return 1
    size = parse_bytes(args.size)
    with tempfile.TemporaryDirectory(prefix="vcdn-bench-appliance-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's worker runs as another user
        root = work / "root"
        entries = make_title(root, args.files, size)
        (work / "nginx").mkdir()
        target = nginx(root, free_port(), work / "nginx")
        target.start(work)
        try:
            base = target.url_prefix.rstrip("/")
            origin = base.rsplit("/v", 1)[0]
            best: dict[str, Result] = {}
            every: dict[str, list[Result]] = {"curl": [], "fill": []}
            for _ in range(args.repeats):
                for result in (run_curl(base, entries, work, args.concurrency),
                               asyncio.run(run_fill(origin, entries, work, args.concurrency))):
                    every[result.name].append(result)
                    if result.name not in best or result.wall < best[result.name].wall:
                        best[result.name] = result
        finally:
            target.stop()
    total = args.files * size
    print(f"fill of one title: {args.files} files x {size} bytes = {total / 1e6:.1f} MB from "
          f"nginx on loopback, concurrency {args.concurrency}, best of {args.repeats}")
    print(f"{'client':<8}{'MB/s':>10}{'wall s':>10}{'CPU s':>10}{'vs curl':>10}")
    ref = best["curl"]
    for r in best.values():
        print(f"{r.name:<8}{r.mbps:>10.1f}{r.wall:>10.3f}{r.cpu:>10.3f}{r.mbps / ref.mbps:>10.2f}")
    print("fill = stream + sha256 + fsync + rename, then import into the cache store "
          "(copy + re-hash + fsync + index); curl = download, then sha256sum -c")
    # Both clients check every file's sha256 and raise otherwise, so a run that reaches
    # here is correct.
    run = Run("appliance", settings=vars(args))
    run.case("manifest_fill", ours={"mbps": [r.mbps for r in every["fill"]],
                                    "cpu_s": [r.cpu for r in every["fill"]]},
             theirs={"mbps": [r.mbps for r in every["curl"]],
                     "cpu_s": [r.cpu for r in every["curl"]]},
             server="curl", ratio_of="mbps", unit="MB/s",
             title="`appliance` manifest fill vs `curl --parallel` + `sha256sum -c`",
             notes=f"{args.files} x {size} B from nginx, concurrency {args.concurrency}, "
                   f"{args.repeats} repeats; fill includes the crash-safe import; every file's "
                   "sha256 checked by both")
    run.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
