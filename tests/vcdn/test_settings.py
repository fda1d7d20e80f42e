"""Settings: defaults < TOML file < environment < overrides, and errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from vcdn.errors import ConfigError
from vcdn.settings import Bytes, load_settings, parse_bytes


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
