"""The sidecar of a fill under way (``tmp/<h>.json``): the leading worker's headers and
fill id, so that followers in other workers can open the growing file and stream it."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from edge.store import Entry


def write_meta(path: Path, draft: Entry, fill_id: str, source: str, generation: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    doc = {
        "fill_id": fill_id, "source": source, "generation": generation,
        "entry": dataclasses.asdict(draft),
    }
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def read_meta(path: Path, generation: int) -> tuple[str | None, Entry | None, str | None]:
    """The sidecar of another worker's fill, if that fill began in `generation` (one that
    began before a purge must not be followed: its bytes are the purged ones)."""
    try:
        doc = json.loads(path.read_text())
        if doc.get("generation") != generation:
            return None, None, None
        fields = doc["entry"]
        fields["headers"] = tuple(tuple(p) for p in fields["headers"])
        return str(doc["fill_id"]), Entry(**fields), doc.get("source")
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None, None, None
