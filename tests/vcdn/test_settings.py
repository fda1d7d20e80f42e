"""Settings: defaults < TOML file < environment < overrides, and errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pytest

from vcdn.errors import ConfigError
from vcdn.settings import (
    Bound,
    Bytes,
    NonNegative,
    Positive,
    check_bounds,
    load_settings,
    parse_bytes,
    setting_names,
)


@dataclass(frozen=True)
class Demo:
    name: str
    port: int = 8080
    capacity: Bytes = 1024
    ratio: float = 0.5
    debug: bool = False
    mode: Literal["tokens", "none"] = "tokens"
    peers: tuple[str, ...] = ()
    cache_dir: Path = Path("/tmp")
    token: str | None = None
    fill_window: str = field(default="02:00-14:00")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_precedence(tmp_path: Path) -> None:
    """File beats defaults, environment beats file, overrides beat environment."""
    path = write(
        tmp_path, 'name = "a"\nport = 1\ncapacity = "2KiB"\n[fill]\nwindow = "01:00-02:00"\n'
    )
    env = {"VCDN_PORT": "2", "VCDN_PEERS": "http://a, http://b", "VCDN_DEBUG": "yes"}
    s = load_settings(Demo, path, env=env, overrides={"port": 3, "ratio": None})
    assert (s.name, s.port, s.capacity, s.debug) == ("a", 3, 2048, True)
    assert s.peers == ("http://a", "http://b")
    assert s.fill_window == "01:00-02:00"  # TOML tables flatten with '_'
    assert s.ratio == 0.5


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("", {}, "Setting 'name' is required"),
        ('name = "a"\nprot = 1\n', {}, "Unknown setting 'prot'"),
        ('name = "a"\nport = "x"\n', {}, "Setting 'port' ('port' in"),
        ('name = "a"\n', {"VCDN_CAPACITY": "lots"}, "environment variable VCDN_CAPACITY"),
        ('name = "a"\nmode = "open"\n', {}, "expected one of 'tokens', 'none'"),
        ('name = "a"\ndebug = "maybe"\n', {}, "expected true or false"),
        ("name = [", {}, "is not valid TOML"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    """Each bad or missing value stops loading with a message that names it."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("'", "'")):
        load_settings(Demo, write(tmp_path, text), env=env)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(Demo, tmp_path / "nope.toml", env={})


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load_settings(Demo, env={"VCDN_NAME": "x"})
    with pytest.raises(AttributeError):
        s.name = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "value"),
    [("10GiB", 10 * 2**30), ("500MB", 500 * 10**6), ("1048576", 2**20), (7, 7), ("1.5KiB", 1536)],
)
def test_parse_bytes(text: str | int, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["ten", "10XB", "-1", ""])
def test_parse_bytes_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bytes(text)


@dataclass(frozen=True, kw_only=True)
class Knobs:
    ttl: NonNegative = 5.0
    timeout: Positive = 2.0
    tries: Annotated[int, Bound(1)] = 3
    size: Bytes = 10

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class Host:
    name: str
    knobs: Knobs = field(default_factory=Knobs)


def test_a_dataclass_field_is_a_table_from_file_environment_or_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "a"\n[knobs]\nttl = 0\nsize = "1KiB"\n')
    s = load_settings(Host, path, env={"VCDN_KNOBS_TIMEOUT": "0.5"}, overrides={"knobs_tries": 7})
    assert s.knobs == Knobs(ttl=0.0, timeout=0.5, tries=7, size=1024)
    flat = load_settings(Host, write(tmp_path, 'name = "a"\nknobs_ttl = 1.5\n'), env={})
    assert flat.knobs == Knobs(ttl=1.5)  # the table flattens like any other
    assert load_settings(Host, None, env={"VCDN_NAME": "a"}).knobs == Knobs()
    assert setting_names(Host) == {
        "name": str, "knobs_ttl": NonNegative, "knobs_timeout": Positive,
        "knobs_tries": Annotated[int, Bound(1)], "knobs_size": Bytes,
    }


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[knobs]\nttl = -1\n", {}, "Setting 'knobs_ttl' ('knobs_ttl' in '{path}') is invalid: "
         "expected a number of at least 0, got -1.0."),
        ("[knobs]\ntimeout = 0\n", {}, "Setting 'knobs_timeout' ('knobs_timeout' in '{path}') is "
         "invalid: expected a number above 0, got 0.0."),
        ("", {"VCDN_KNOBS_TRIES": "0"}, "Setting 'knobs_tries' (environment variable "
         "VCDN_KNOBS_TRIES) is invalid: expected a number of at least 1, got 0."),
        ('[knobs]\nsize = "64XB"\n', {}, "Setting 'knobs_size' ('knobs_size' in '{path}') is "
         "invalid: expected a byte size such as 500MB, 10GiB or 1048576, got '64XB'."),
        ("[knobs]\nsize = -5\n", {}, "Setting 'knobs_size' ('knobs_size' in '{path}') is "
         "invalid: a byte size cannot be negative."),
        ("[knobs]\nttls = 1\n", {}, "Unknown setting 'knobs_ttls' in '{path}'; the [knobs] "
         "table takes: size, timeout, tries, ttl."),
        ("knobs = 1\n", {}, "Unknown setting 'knobs' in '{path}'; known settings: knobs_size, "
         "knobs_timeout, knobs_tries, knobs_ttl, name."),
    ],
)
def test_a_table_setting_is_checked_naming_its_key_and_file(
    tmp_path: Path, text: str, env: dict[str, str], message: str
) -> None:
    path = write(tmp_path, 'name = "a"\n' + text)
    with pytest.raises(ConfigError) as caught:
        load_settings(Host, path, env=env)
    assert str(caught.value) == message.format(path=path)


def test_bounds_hold_for_settings_built_in_code() -> None:
    with pytest.raises(ConfigError) as caught:
        Knobs(ttl=-0.5)
    assert str(caught.value) == (
        "Setting 'ttl' is invalid: expected a number of at least 0, got -0.5.")
    with pytest.raises(ConfigError) as caught:
        Knobs(timeout=0)
    assert str(caught.value) == "Setting 'timeout' is invalid: expected a number above 0, got 0."
    assert Knobs(ttl=0, tries=1).ttl == 0
