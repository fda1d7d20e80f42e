"""JSON logging: one object per line with stable keys (ts, level, service, event, ...).

Call `setup_logging(service)` once at start-up; then log with
``log.info("fill_done", extra={"fields": {"title": t, "bytes": n}})`` or the `event` helper.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; extra keys come from ``record.fields``."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


def setup_logging(service: str, level: str = "info", stream: TextIO | None = None) -> None:
    """Route every logger to one JSON handler on stderr (or `stream`)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log repeats what our own events say; keep it quiet by default.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={"fields": fields})


def now() -> float:
    return time.time()
