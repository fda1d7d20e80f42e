"""Running wrk with a generated Lua script and reading its one-line JSON result."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from bench.edge.content import TITLE, Case
from bench.edge.targets import LOAD_CPU

# Requests cycle through paths, Range headers and URL prefixes independently; a prefix is
# used for `batch` requests in a row (a signed target's prefix carries the token, so a list
# of prefixes is a new token per request or per small batch, as real players bring).
SCRIPT: Final = """\
local paths = {{{paths}}}
local ranges = {{{ranges}}}
local prefixes = {{{prefixes}}}
local batch = {batch}
local i = 0
request = function()
  i = i + 1
  local headers = {{}}
  if #ranges > 0 then
    headers["Range"] = ranges[(i % #ranges) + 1]
  end
  local prefix = prefixes[(math.floor(i / batch) % #prefixes) + 1]
  return wrk.format("GET", prefix .. paths[(i % #paths) + 1], headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {{"requests": %d, "bytes": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": %d, "status_errors": %d}}\\n',
    summary.requests, summary.bytes, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class Result:
    requests: int
    bytes: int
    duration_us: int
    p50_us: int
    p99_us: int
    errors: int
    status_errors: int

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6)

    @property
    def mbps(self) -> float:
        return self.bytes / (self.duration_us / 1e6) / 1e6


def _lua_strings(items: Sequence[str]) -> str:
    return ", ".join(json.dumps(s) for s in items)  # JSON string escapes are valid Lua


def run(url_prefix: str, case: Case, *, seconds: float, connections: int, work: Path,
        prefixes: Sequence[str] = (), batch: int = 1) -> Result:
    """One wrk run. `prefixes` (full URL prefixes like `url_prefix`) replace it per batch."""
    parts = urlsplit(url_prefix)
    paths = [urlsplit(p).path + TITLE + "/" for p in (prefixes or [url_prefix])]
    script = work / f"{case.name}.lua"
    script.write_text(SCRIPT.format(
        paths=_lua_strings(case.paths),
        ranges=_lua_strings(case.ranges),
        prefixes=_lua_strings(paths),
        batch=max(1, batch),
    ))
    cmd = [
        "taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "5s", "-s", str(script), f"{parts.scheme}://{parts.netloc}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return Result(**json.loads(line[len("RESULT "):]))
    raise RuntimeError(f"wrk printed no result: {out.stdout[-1000:]} {out.stderr[-1000:]}")
