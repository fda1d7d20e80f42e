"""Running wrk with a generated Lua script and reading its one-line JSON result."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from bench.edge.content import LARGE, TITLE, Case
from bench.edge.targets import LOAD_CPU

SCRIPT: Final = """\
local paths = {{{paths}}}
local prefix = "{prefix}"
local range_size = {range_size}
local slots = {slots}
local i = 0
math.randomseed(42)
request = function()
  i = (i % #paths) + 1
  local headers = {{}}
  if range_size > 0 then
    local first = math.random(0, slots - 1) * range_size
    headers["Range"] = "bytes=" .. first .. "-" .. (first + range_size - 1)
  end
  return wrk.format("GET", prefix .. paths[i], headers)
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


def run(url_prefix: str, case: Case, *, seconds: float, connections: int, work: Path) -> Result:
    parts = urlsplit(url_prefix)
    script = work / f"{case.name}.lua"
    slots = LARGE // case.range_size if case.range_size else 0
    script.write_text(SCRIPT.format(
        paths=", ".join(f'"{p}"' for p in case.paths),
        prefix=f"{parts.path}{TITLE}/",
        range_size=case.range_size or 0,
        slots=slots,
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
