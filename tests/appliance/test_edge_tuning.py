"""The appliance's `[edge]` table tunes its embedded cache engine: the engine's own keys,
bounds and messages (`edge.settings.EdgeTuning`), refused by name for what the appliance
decides itself, and in effect in a running appliance."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from appliance import settings as settings_mod
from appliance.daemon import Appliance, edge_settings
from edge.policies.lru import LRU
from edge.settings import EdgeSettings, EdgeTuning
from onebox.procs import free_port
from tests.appliance.conftest import (
    ROOT,
    Served,
    appliance_toml,
    blob,
    make_title,
    signed,
    start_proc,
    until,
)
from vcdn.errors import ConfigError
from vcdn.settings import load_settings

TUNED = """
[edge]
eviction = "lru"
connect_timeout = 0.75
retries = 0
breaker_threshold = 3
breaker_reset = 30.0
ram_cache = 0
ram_object_max = "128KiB"
far_ahead = "1MiB"
range_fill_max = "2MiB"
negative_ttl = 0
"""


def config(tmp_path: Path, table: str, **extra: object) -> Path:
    """An operator's settings file: the appliance's keys, then `table` (TOML text)."""
    path = appliance_toml(
        tmp_path / "a.toml", id="a1", site="s1", port=extra.pop("port", 8080),  # type: ignore[arg-type]
        admin_port=free_port(), cache_dir=tmp_path / "cache",
        control_url=extra.pop("control_url", "http://127.0.0.1:8090"),  # type: ignore[arg-type]
        origin_url=extra.pop("origin_url", "http://127.0.0.1:8000"),  # type: ignore[arg-type]
        **extra,
    )
    path.write_text(path.read_text() + table)
    return path


def test_every_tunable_reaches_the_engine_and_nothing_else_moves(tmp_path: Path) -> None:
    s = settings_mod.load(config(tmp_path, TUNED), env={})
    want = EdgeTuning(eviction="lru", connect_timeout=0.75, retries=0, breaker_threshold=3,
                      breaker_reset=30.0, ram_cache=0, ram_object_max=128 * 1024,
                      far_ahead=2**20, range_fill_max=2 * 2**20,
                      negative_ttl=0.0)
    assert s.edge == want
    engine = edge_settings(s)
    assert {f.name: getattr(engine, f.name) for f in dataclasses.fields(EdgeTuning)} == vars(want)
    untuned = edge_settings(settings_mod.load(config(tmp_path, ""), env={}))
    assert dataclasses.replace(untuned, **vars(want)) == engine  # only the tuning differs
    assert untuned.ram_cache == EdgeTuning().ram_cache == 64 * 1024**2


def test_the_environment_and_flat_keys_tune_it_too(tmp_path: Path) -> None:
    path = config(tmp_path, "", edge_negative_ttl=1.5)
    s = settings_mod.load(path, env={"VCDN_EDGE_RAM_CACHE": "1MiB", "VCDN_EDGE_EVICTION": "lfu"})
    assert (s.edge.ram_cache, s.edge.eviction, s.edge.negative_ttl) == (2**20, "lfu", 1.5)
    with pytest.raises(ConfigError, match=r"^Setting 'edge_retries' \(environment variable "
                       r"VCDN_EDGE_RETRIES\) is invalid: expected a number of at least 0"):
        settings_mod.load(path, env={"VCDN_EDGE_RETRIES": "-2"})


BAD = [
    ('ram_cache = "64XB"', "expected a byte size such as 500MB, 10GiB or 1048576, got '64XB'"),
    ("ram_object_max = -1", "a byte size cannot be negative"),
    ('far_ahead = "-4MiB"', "expected a byte size such as 500MB, 10GiB or 1048576, "
     "got '-4MiB'"),
    ("range_fill_max = true", "expected a byte size such as 10GiB, got a boolean"),
    ("negative_ttl = -1", "expected a number of at least 0, got -1.0"),
    ("connect_timeout = 0", "expected a number above 0, got 0.0"),
    ("retries = -1", "expected a number of at least 0, got -1"),
    ('retries = "two"', "expected an integer, got 'two'"),
    ("breaker_threshold = 0", "expected a number of at least 1, got 0"),
    ("breaker_reset = -3", "expected a number above 0, got -3.0"),
    ('eviction = "fifo"', "expected one of 'popularity', 'lru', 'lfu', 's3fifo', got 'fifo'"),
]


@pytest.mark.parametrize(("line", "problem"), BAD)
def test_a_bad_value_names_the_key_and_file_as_the_edge_does(
    tmp_path: Path, line: str, problem: str
) -> None:
    key = line.split(" ")[0]
    path = config(tmp_path, f"[edge]\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        settings_mod.load(path, env={})
    assert str(caught.value) == (
        f"Setting 'edge_{key}' ('edge_{key}' in '{path}') is invalid: {problem}.")
    # `vcdn edge` says the same of the same line in its own file.
    own = tmp_path / "edge.toml"
    own.write_text(f'cache_dir = "c"\nupstream = "http://o"\nauth = "none"\n{line}\n')
    with pytest.raises(ConfigError) as edge_says:
        load_settings(EdgeSettings, own, env={})
    assert str(edge_says.value) == f"Setting '{key}' ('{key}' in '{own}') is invalid: {problem}."


def test_an_unknown_key_lists_what_the_table_takes(tmp_path: Path) -> None:
    path = config(tmp_path, '[edge]\nram_cahce = "1MiB"\n')
    with pytest.raises(ConfigError) as caught:
        settings_mod.load(path, env={})
    tunables = ", ".join(sorted(f.name for f in dataclasses.fields(EdgeTuning)))
    assert str(caught.value) == (
        f"Unknown setting 'edge_ram_cahce' in '{path}'; the [edge] table takes: {tunables}.")


@pytest.mark.parametrize(
    ("line", "instead"),
    [
        ('cache_dir = "/elsewhere"', "set the appliance's 'cache_dir' instead"),
        ('upstream = "http://other-origin"', "set the appliance's 'origin_url' instead"),
        ('capacity = "1TiB"', "set the appliance's 'cache_capacity' instead"),
        ('peers = ["http://p"]', "set the appliance's 'peers' instead"),
        ('auth = "none"', "set the appliance's 'auth' instead"),
        ('signing_keys = "k:secret-0123456789"', "set the appliance's 'signing_keys' instead"),
        ('host = "::"', "set the appliance's 'host' instead"),
        ("port = 80", "set the appliance's 'port' instead"),
        ("read_timeout = 1.0", "set the appliance's 'upstream_timeout' instead"),
        ('tls_cert = "c.pem"', "set the appliance's 'tls_cert' instead"),
        ("max_connections = 5", "set the appliance's 'max_connections' instead"),
        ("workers = 4", "the appliance fixes it (one, which the control loops share)"),
        ('mode = "proxy"', "the appliance fixes it (video URLs only)"),
        ('query_policy = "ignore"', "the appliance fixes it (video URLs never key on their "
         "query)"),
    ],
)
def test_what_the_appliance_decides_cannot_be_set_in_edge(
    tmp_path: Path, line: str, instead: str
) -> None:
    key = line.split(" ")[0]
    path = config(tmp_path, f"[edge]\n{line}\n")
    with pytest.raises(ConfigError) as caught:
        settings_mod.load(path, env={})
    message = str(caught.value)
    assert message.startswith(
        f"Setting 'edge_{key}' in '{path}': the appliance sets the engine's '{key}' itself, "
        f"so [edge] cannot change it; {instead}. [edge] takes: breaker_reset, ")
    assert "\n" not in message


def test_the_command_says_it_in_one_line(tmp_path: Path) -> None:
    path = config(tmp_path, '[edge]\nram_cache = "64XB"\n')
    done = subprocess.run([sys.executable, "-m", "vcdn.cli", "appliance", "--config", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"vcdn appliance: Setting 'edge_ram_cache' ('edge_ram_cache' in '{path}') is invalid: "
        "expected a byte size such as 500MB, 10GiB or 1048576, got '64XB'."]


def test_the_appliance_engine_is_built_with_the_tuning(tmp_path: Path) -> None:
    engine = Appliance(settings_mod.load(config(tmp_path, TUNED), env={})).edge
    assert type(engine.store.policy) is LRU
    assert engine.ram.capacity == 0 and engine.ram.object_max == 128 * 1024
    assert engine.settings.negative_ttl == 0.0 and engine.settings.retries == 0


async def hit(session: aiohttp.ClientSession, url: str, body: bytes) -> bool:
    async with session.get(url) as resp:
        assert resp.status == 200 and await resp.read() == body
        return resp.headers["Cache-Status"] == "vcdn-edge; hit"


@pytest.mark.parametrize(("ram_cache", "from_ram"), [("64MiB", True), ("0", False)])
async def test_a_running_appliance_serves_hits_from_ram_only_with_ram_cache(
    tmp_path: Path, origin: Served, control: Served, origin_root: Path,
    ram_cache: str, from_ram: bool,
) -> None:
    """A hit of a small segment comes from RAM (the bytes read when it was first hit) or,
    with ``ram_cache = 0``, from its file: rewriting the cached file in place tells which."""
    first = blob(50_000, 1)
    make_title(origin_root, "tiny", {"v/seg_00001.ts": first})
    port = free_port()
    path = config(tmp_path, f'[edge]\nram_cache = "{ram_cache}"\n', port=port,
                  control_url=control.url, origin_url=origin.url)
    proc = await start_proc(["appliance", "--config", str(path)], tmp_path / "a.log")
    try:
        url = f"http://127.0.0.1:{port}/s/{signed('tiny')}/tiny/v/seg_00001.ts"
        async with aiohttp.ClientSession() as s:
            # The miss that fills it, then the first hit, which reads the file (into RAM).
            await until(lambda: hit(s, url, first), within=10, every=0.1)
            (stored,) = [p for p in (tmp_path / "cache").rglob("*")
                         if p.is_file() and p.stat().st_size == len(first)
                         and p.read_bytes() == first]
            second = blob(len(first), 2)
            with open(stored, "r+b") as fh:  # noqa: ASYNC230 - a local file, at once
                fh.write(second)
            async with s.get(url) as resp:
                assert resp.headers["Cache-Status"] == "vcdn-edge; hit"
                assert await resp.read() == (first if from_ram else second)
    finally:
        assert await proc.terminate() == 0
