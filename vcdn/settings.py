"""Settings: frozen dataclasses filled from defaults, a TOML file, `VCDN_*` environment
variables and command-line overrides, in that order of precedence (later wins).

This is the only module that reads ``os.environ``. A bad or missing value stops start-up
with a `ConfigError` that names the key and says what was expected, because an operator
fixing a config file at 3 a.m. needs the key, not a traceback.

TOML tables are flattened with ``_``: ``[fill] window = "02:00-14:00"`` sets ``fill_window``.
A field whose type is itself a dataclass is such a table of its own: its settings are
``{field}_{name}`` in the file (``[edge] ram_cache`` or ``edge_ram_cache``), the environment
(``VCDN_EDGE_RAM_CACHE``) and overrides, and they are converted and checked exactly as the
same dataclass is when it is loaded on its own, so one component can embed another's
settings without restating them.
Byte sizes accept ``10GiB``/``500MB``/plain integers when the field is annotated ``Bytes``;
numbers annotated with a `Bound` (``NonNegative``, ``Positive``) refuse values below it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar, get_args, get_origin

from vcdn.errors import ConfigError

T = TypeVar("T")


class _BytesMarker:
    """Marks an int field as a byte size that accepts unit suffixes."""


Bytes = Annotated[int, _BytesMarker]


@dataclass(frozen=True, slots=True)
class Bound:
    """The smallest value a number setting takes (`above`: strictly more than `low`), so a
    negative timeout or retry count stops start-up instead of misbehaving at run time."""

    low: float
    above: bool = False

    def problem(self, value: Any) -> str | None:
        """Why `value` is out of bounds, or None."""
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if self.above and not value > self.low:
            return f"expected a number above {self.low:g}, got {value!r}"
        if not self.above and not value >= self.low:
            return f"expected a number of at least {self.low:g}, got {value!r}"
        return None


#: Seconds or counts that may be 0 (often "off") but never negative.
NonNegative = Annotated[float, Bound(0)]
#: Seconds that must be more than 0 (a timeout, a period).
Positive = Annotated[float, Bound(0, above=True)]

_UNITS: Final = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
_SIZE_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_TRUE: Final = {"1", "true", "yes", "on"}
_FALSE: Final = {"0", "false", "no", "off"}


def parse_bytes(text: str | int) -> int:
    """`"10GiB"` → 10737418240. Raises ValueError with the accepted forms."""
    if isinstance(text, bool):
        raise ValueError("expected a byte size such as 10GiB, got a boolean")
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a byte size cannot be negative")
        return text
    m = _SIZE_RE.match(str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"expected a byte size such as 500MB, 10GiB or 1048576, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _convert(value: Any, hint: Any, key: str) -> Any:
    origin = get_origin(hint)
    if origin is Annotated:
        base, *extra = get_args(hint)
        converted = parse_bytes(value) if _BytesMarker in extra else _convert(value, base, key)
        for mark in extra:
            if isinstance(mark, Bound) and (problem := mark.problem(converted)):
                raise ValueError(problem)
        return converted
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        optional = len(args) < len(get_args(hint))
        if value is None or (optional and value == ""):
            return None
        return _convert(value, args[0], key)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin in (list, tuple):
        (item,) = get_args(hint)[:1]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list, got {value!r}")
        return tuple(_convert(v, item, key) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ValueError(f"expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str | Path):
            raise ValueError(f"expected a path, got {value!r}")
        return Path(value)
    return value


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}".replace("-", "_")
        if isinstance(value, dict):
            out.update(_flatten(value, name + "_"))
        else:
            out[name] = value
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML settings file, flattened; errors name the file and line."""
    try:
        with open(path, "rb") as fh:
            return _flatten(tomllib.load(fh))
    except FileNotFoundError:
        raise ConfigError(f"Settings file '{path}' does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Settings file '{path}' is not valid TOML: {exc}.") from None
    except OSError as exc:
        raise ConfigError(f"Settings file '{path}' cannot be read: {exc.strerror}.") from None


def _is_table(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def setting_names(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every flat setting name of `cls` (a table field's as ``{field}_{name}``) → its type."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        hint = _hints(cls)[field.name]
        if _is_table(hint):
            out.update(setting_names(hint, f"{prefix}{field.name}_"))
        else:
            out[prefix + field.name] = hint
    return out


def _unknown(cls: type, key: str, where: str) -> str:
    """The unknown-key sentence: for a key of a table, the keys that table takes."""
    for field in dataclasses.fields(cls):
        hint = _hints(cls)[field.name]
        if _is_table(hint) and key.startswith(field.name + "_"):
            known = ", ".join(sorted(setting_names(hint)))
            return f"Unknown setting '{key}'{where}; the [{field.name}] table takes: {known}."
    known = ", ".join(sorted(setting_names(cls)))
    return f"Unknown setting '{key}'{where}; known settings: {known}."


def load_settings(
    cls: type[T],
    path: Path | str | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    env_prefix: str = "VCDN_",
) -> T:
    """Build a frozen settings dataclass; precedence: defaults < file < environment < overrides.

    `overrides` come from command-line flags; entries whose value is None are ignored so that
    an absent flag does not mask the file.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    env = os.environ if env is None else env
    names = setting_names(cls)
    raw: dict[str, tuple[Any, str]] = {}
    if path is not None:
        for key, value in read_toml(Path(path)).items():
            if key not in names:
                raise ConfigError(_unknown(cls, key, f" in '{path}'"))
            raw[key] = (value, f"'{key}' in '{path}'")
    for name in names:
        var = env_prefix + name.upper()
        if var in env:
            raw[name] = (env[var], f"environment variable {var}")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in names:
            raise ConfigError(_unknown(cls, key, ""))
        raw[key] = (value, f"option --{key.replace('_', '-')}")
    return _build(cls, raw, "", env_prefix)


def _build(cls: type[T], raw: Mapping[str, tuple[Any, str]], prefix: str, env_prefix: str) -> T:
    """`cls` from the converted `raw` values of its flat names under `prefix`."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        hint = _hints(cls)[field.name]
        name = prefix + field.name
        if _is_table(hint):
            values[field.name] = _build(hint, raw, name + "_", env_prefix)
        elif name in raw:
            value, where = raw[name]
            try:
                values[field.name] = _convert(value, hint, name)
            except ValueError as exc:
                raise ConfigError(f"Setting '{name}' ({where}) is invalid: {exc}.") from None
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(
                f"Setting '{name}' is required: set it in the settings file or as "
                f"{env_prefix}{name.upper()}."
            )
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid settings: {exc}") from None


def check_bounds(settings: object) -> None:
    """Refuse a field below its `Bound` on a settings object built directly (in code, not
    by `load_settings`, which already refused it naming where it came from)."""
    for field in dataclasses.fields(settings):  # type: ignore[arg-type]
        hint = _hints(type(settings))[field.name]
        if get_origin(hint) is not Annotated:
            continue
        for mark in get_args(hint)[1:]:
            if isinstance(mark, Bound) and (problem := mark.problem(getattr(settings, field.name))):
                raise ConfigError(f"Setting '{field.name}' is invalid: {problem}.")


def env_value(name: str, default: str | None = None) -> str | None:
    """Read one environment variable; the single sanctioned door to ``os.environ``."""
    return os.environ.get(name, default)
