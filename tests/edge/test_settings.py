"""`vcdn edge` settings: the cache engine's tuning (`EdgeTuning`) refuses values outside
its bounds from a file, the environment or code, naming the key (and the file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli import build_settings
from edge.settings import EdgeSettings
from vcdn.errors import ConfigError


def config(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(f'cache_dir = "{tmp_path / "cache"}"\nupstream = "http://127.0.0.1:9"\n'
                    f'auth = "none"\n{extra}\n')
    return path


def test_a_file_tunes_the_engine(tmp_path: Path) -> None:
    s = build_settings(["--config", str(config(
        tmp_path, 'ram_cache = 0\nnegative_ttl = 0\nretries = 0\neviction = "lru"\n'
        'far_ahead = "1MiB"\nbreaker_threshold = 1\nconnect_timeout = 0.25'))])
    assert (s.ram_cache, s.negative_ttl, s.retries, s.eviction) == (0, 0.0, 0, "lru")
    assert (s.far_ahead, s.breaker_threshold, s.connect_timeout) == (2**20, 1, 0.25)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("negative_ttl = -1", "negative_ttl' in '{path}') is invalid: expected a number of at "
         "least 0, got -1.0."),
        ("connect_timeout = 0", "connect_timeout' in '{path}') is invalid: expected a number "
         "above 0, got 0.0."),
        ("breaker_reset = -5", "breaker_reset' in '{path}') is invalid: expected a number "
         "above 0, got -5.0."),
        ("retries = -1", "retries' in '{path}') is invalid: expected a number of at least 0, "
         "got -1."),
        ("breaker_threshold = 0", "breaker_threshold' in '{path}') is invalid: expected a "
         "number of at least 1, got 0."),
        ("read_timeout = 0", "read_timeout' in '{path}') is invalid: expected a number above 0, "
         "got 0.0."),
        ('ram_cache = "64XB"', "ram_cache' in '{path}') is invalid: expected a byte size such "
         "as 500MB, 10GiB or 1048576, got '64XB'."),
        ("range_fill_max = -1", "range_fill_max' in '{path}') is invalid: a byte size cannot "
         "be negative."),
    ],
)
def test_a_value_out_of_bounds_is_one_line_naming_key_and_file(
    tmp_path: Path, extra: str, problem: str
) -> None:
    path = config(tmp_path, extra)
    key = extra.split(" ")[0]
    with pytest.raises(ConfigError) as caught:
        build_settings(["--config", str(path)])
    assert str(caught.value) == f"Setting '{key}' ('" + problem.format(path=path)


def test_settings_built_in_code_are_bounded_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Setting 'retries' is invalid: expected a number of "
                       r"at least 0, got -1\."):
        EdgeSettings(cache_dir=tmp_path, upstream="http://127.0.0.1:9", auth="none", retries=-1)
