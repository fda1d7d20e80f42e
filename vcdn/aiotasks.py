"""Stopping background tasks at shutdown, the same way everywhere."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


async def cancel_all(tasks: Iterable[asyncio.Task[object]]) -> None:
    """Cancel every task, then wait for each to end. All are cancelled before any is
    awaited, so none keeps running while another winds down; a task's own failure is
    not the caller's (it was logged, or it is moot now that we stop)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(BaseException):
            await task
