"""Reloading URL-signing keys without a restart: on SIGHUP, and when a watched file changes.

Rotation must not need a restart (a restart drops every connection of an appliance).
Each service gives a `KeyWatch` a `load` function that rebuilds its keys the way start-up
did (settings file, keys file, environment) and an `apply` function that swaps them in.
A reload that fails (a typo in the new file) keeps the keys in service and logs why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from vcdn.errors import ConfigError
from vcdn.logs import event
from vcdn.tokens import KeyRing, parse_keys

log = logging.getLogger("vcdn.keys")

#: How often watched files are stat()ed for a change.
POLL_SECONDS: Final = 2.0


def read_keys(inline: str, file: Path | None) -> KeyRing:
    """Keys from the inline setting, else from `file` (same text form)."""
    if inline.strip():
        return parse_keys(inline)
    if file is None:
        return KeyRing()
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(
            f"Signing keys file '{file}' cannot be read: {exc.strerror or exc}."
        ) from None
    return parse_keys(",".join(line.strip() for line in text.splitlines()))


def file_stamp(paths: Iterable[Path]) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) of each file, (path, -1, -1) when missing: a change detector."""
    out = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append((str(path), -1, -1))
        else:
            out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


class KeyWatch:
    """Calls `apply(load())` on SIGHUP and whenever one of `files` changes."""

    def __init__(
        self,
        load: Callable[[], KeyRing],
        apply: Callable[[KeyRing], None],
        files: Iterable[Path],
        *,
        current: KeyRing,
        interval: float = POLL_SECONDS,
    ) -> None:
        self._load = load
        self._apply = apply
        self._files = tuple(files)
        self._current = current
        self._interval = interval
        self._stamp = file_stamp(self._files)
        self.reloads = 0

    def reload(self, reason: str) -> bool:
        """Load the keys again; True if new keys went into service."""
        try:
            keys = self._load()
        except ConfigError as exc:
            event(log, "keys_reload_failed", logging.ERROR, reason=reason, error=str(exc))
            return False
        if not keys and self._current:
            event(log, "keys_reload_failed", logging.ERROR, reason=reason,
                  error="The new settings hold no signing key; the old keys stay in service.")
            return False
        if keys == self._current:
            return False
        self._current = keys
        self._apply(keys)
        self.reloads += 1
        event(log, "keys_reloaded", reason=reason, key_ids=list(keys))
        return True

    def check(self) -> bool:
        stamp = file_stamp(self._files)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        return self.reload("file_changed")

    async def run(self) -> None:
        """Until cancelled: SIGHUP reloads at once; files are polled every `interval`."""
        remove = add_sighup(lambda: self.reload("sighup"))
        try:
            while True:
                await asyncio.sleep(self._interval)
                self.check()
        finally:
            remove()


_hup: dict[asyncio.AbstractEventLoop, list[Callable[[], object]]] = {}


def add_sighup(callback: Callable[[], object]) -> Callable[[], None]:
    """Call `callback` on SIGHUP; returns the function that stops it. One event loop has
    one handler per signal, so the key and certificate watchers share it through here."""
    loop = asyncio.get_running_loop()
    callbacks = _hup.setdefault(loop, [])
    if not callbacks:
        loop.add_signal_handler(signal.SIGHUP, _fan_out, loop)
    callbacks.append(callback)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            callbacks.remove(callback)
        if not callbacks:
            _hup.pop(loop, None)
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signal.SIGHUP)

    return remove


def _fan_out(loop: asyncio.AbstractEventLoop) -> None:
    for callback in list(_hup.get(loop, ())):
        callback()
