"""One run of one benchmark, written as bench/results/NAME.json and NAME.md.

Figures people choose a CDN on must be traceable: every number the README or a doc quotes
comes from one of these files, which hold the command line, versions, machine, raw samples
and the judgement (ratio, target met). A case that saw errors or failed its correctness
check keeps its samples but gets no ratio, so a fast wrong answer can never be quoted.

    from bench.record import Run
    run = Run("steering")
    run.case("uncached_v4", ours={"qps": [...]}, theirs={"qps": [...]}, server="gdnsd",
             ratio_of="qps", target=">= 0.5", errors=0, correct=True, unit="queries/s")
    run.save()
"""

from __future__ import annotations

import datetime
import json
import operator
import os
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parent.parent
RESULTS_DIR: Final = REPO / "bench" / "results"
FORMAT: Final = 1

# The Debian package that provides each established server or tool we compare against;
# its installed version is the exact build measured.
PACKAGES: Final[dict[str, str]] = {
    "nginx": "nginx-light",
    "gdnsd": "gdnsd",
    "wrk": "wrk",
    "dnsperf": "dnsperf",
    "ffmpeg": "ffmpeg",
    "curl": "curl",
    "sha256sum": "coreutils",
    "postgresql": "postgresql",
    "redis": "redis-server",
    "chromium": "chromium",
    "strace": "strace",
}

_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt, "==": operator.eq,
}
_TARGET = re.compile(r"^\s*(>=|<=|==|>|<)\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(\S.*)?$")

Samples = float | int | Iterable[float | int]


class TargetError(ValueError):
    """A target must read like '>= 0.8' or '< 5 ms': an operator, a number, an optional unit."""


def parse_target(target: str) -> tuple[str, float]:
    """'>= 0.25' -> ('>=', 0.25). A unit after the number is allowed and ignored."""
    m = _TARGET.match(target)
    if not m:
        raise TargetError(
            f"Target {target!r} is not '<op> <number> [unit]' (op one of >= > <= < ==).")
    return m.group(1), float(m.group(2))


def meets(value: float, target: str) -> bool:
    op, bound = parse_target(target)
    return _OPS[op](value, bound)


def _samples(values: Mapping[str, Samples] | None) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for key, v in (values or {}).items():
        xs = [v] if isinstance(v, int | float) else list(v)
        out[key] = [float(x) for x in xs]
    return out


def _medians(samples: Mapping[str, list[float]]) -> dict[str, float | None]:
    return {k: (statistics.median(v) if v else None) for k, v in samples.items()}


@dataclass
class Case:
    """One measured comparison (or one absolute measurement when `theirs` is empty)."""

    name: str
    ours: dict[str, list[float]]
    theirs: dict[str, list[float]]
    server: str | None
    ratio_of: str | None
    target: str | None
    target_of: str
    errors: int
    correct: bool
    unit: str
    notes: str
    title: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ours_median(self) -> dict[str, float | None]:
        return _medians(self.ours)

    @property
    def theirs_median(self) -> dict[str, float | None]:
        return _medians(self.theirs)

    @property
    def valid(self) -> bool:
        """Only an error-free, checked-correct run may be judged or quoted as a ratio."""
        return self.errors == 0 and self.correct

    @property
    def ratio(self) -> float | None:
        if not self.valid or self.ratio_of is None:
            return None
        a = self.ours_median.get(self.ratio_of)
        b = self.theirs_median.get(self.ratio_of)
        if a is None or b is None or b == 0:
            return None
        return a / b

    @property
    def judged(self) -> float | None:
        """The value the target applies to: the ratio, or the median of one of our metrics."""
        if not self.valid:
            return None
        if self.target_of == "ratio":
            return self.ratio
        return self.ours_median.get(self.target_of)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        value = self.judged
        return False if value is None else meets(value, self.target)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "server": self.server,
            "unit": self.unit,
            "ratio_of": self.ratio_of,
            "samples": {"ours": self.ours, "theirs": self.theirs},
            "median": {"ours": self.ours_median, "theirs": self.theirs_median},
            "ratio": self.ratio,
            "target": self.target,
            "target_of": self.target_of,
            "met": self.met,
            "errors": self.errors,
            "correct": self.correct,
            "notes": self.notes,
            "extra": self.extra,
        }

    def line(self) -> str:
        """The one line a benchmark prints for this case; no ratio unless the case is valid."""
        if not self.valid:
            why = []
            if self.errors:
                why.append(f"{self.errors} errors")
            if not self.correct:
                why.append("correctness check failed")
            return f"{self.name}: NO RATIO ({', '.join(why)})"
        parts = [self.name + ":"]
        key = self.ratio_of or next(iter(self.ours), None)
        if key is not None:
            ours = self.ours_median.get(key)
            parts.append(f"{key} {fmt(ours)}{' ' + self.unit if self.unit else ''}")
            theirs = self.theirs_median.get(key)
            if theirs is not None:
                parts.append(f"vs {fmt(theirs)} ({self.server or 'theirs'})")
        if self.ratio is not None:
            parts.append(f"= {self.ratio:.2f}x")
        if self.target is not None:
            verdict = "met" if self.met else "NOT met"
            parts.append(f"target {self.target_of} {self.target}: {verdict}")
        return " ".join(parts)


def fmt(x: float | None) -> str:
    """Numbers as people read them in a table: 63,412 / 2.55 / 0.0123."""
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 0.01 or x == 0:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _first_line(cmd: list[str]) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in (p.stdout + "\n" + p.stderr).splitlines():
        if line.strip():
            return line.strip()
    return None


def tool_version(name: str) -> str | None:
    """The installed Debian version of a known server or tool, or None when it is absent."""
    pkg = PACKAGES.get(name, name)
    line = _first_line(["dpkg-query", "-W", "-f", "${Version}", pkg])
    return None if line is None or "no packages found" in line.lower() else line


def _git(*args: str) -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                           timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "loadavg": load,
    }


def command_line() -> list[str]:
    """How this benchmark was started, as someone would retype it (`python -m bench.edge ...`)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:
        module = spec.name.removesuffix(".__main__")
        return ["python", "-m", module, *sys.argv[1:]]
    return ["python", *sys.argv]


class Run:
    """Collects the cases of one benchmark run and writes them out at the end."""

    def __init__(self, name: str, *, results_dir: Path | None = None,
                 versions: Mapping[str, str] | None = None, quiet: bool = False,
                 settings: Mapping[str, Any] | None = None) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
            raise ValueError(
                f"Run name {name!r} must be lower-case letters, digits, '.', '_' or '-'.")
        self.name = name
        self.results_dir = results_dir or Path(os.environ.get("VCDN_BENCH_RESULTS", RESULTS_DIR))
        self.versions: dict[str, str | None] = dict(versions or {})
        self.settings: dict[str, Any] = dict(settings or {})
        self.quiet = quiet
        self.cases: list[Case] = []
        self.started = datetime.datetime.now(datetime.UTC)
        self.machine = machine()
        self.command = command_line()

    def case(self, name: str, *, ours: Mapping[str, Samples],
             theirs: Mapping[str, Samples] | None = None, server: str | None = None,
             ratio_of: str | None = None, target: str | None = None,
             target_of: str = "ratio", errors: int = 0, correct: bool = True, unit: str = "",
             notes: str = "", title: str | None = None, **extra: Any) -> Case:
        """Record one case. `target` applies to the ratio unless `target_of` names one of our
        metrics (e.g. target_of="p99_ms", target="< 5"); extra keywords are kept as they are."""
        if any(c.name == name for c in self.cases):
            raise ValueError(f"Case {name!r} recorded twice in run {self.name!r}.")
        if target is not None:
            parse_target(target)
        if target_of != "ratio" and target_of not in ours:
            raise ValueError(
                f"target_of={target_of!r} names no metric of ours ({', '.join(ours)}).")
        if ratio_of is not None and ratio_of not in ours:
            raise ValueError(f"ratio_of={ratio_of!r} names no metric of ours ({', '.join(ours)}).")
        if target_of == "ratio" and target is not None and (ratio_of is None or not theirs):
            raise ValueError(f"Case {name!r} has a ratio target but no ratio_of/theirs to compare.")
        c = Case(name=name, ours=_samples(ours), theirs=_samples(theirs), server=server,
                 ratio_of=ratio_of, target=target, target_of=target_of, errors=int(errors),
                 correct=bool(correct), unit=unit, notes=notes, title=title or name, extra=extra)
        self.cases.append(c)
        if server and server not in self.versions:
            self.versions[server] = tool_version(server)
        if not self.quiet:
            print(c.line(), flush=True)
        return c

    def to_json(self) -> dict[str, Any]:
        versions = {"python": platform.python_version(), "vcdn": _vcdn_version(), **self.versions}
        return {
            "format": FORMAT,
            "name": self.name,
            "command": self.command,
            "utc": self.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "finished_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "git": {"commit": _git("rev-parse", "HEAD"),
                    "dirty": bool(_git("status", "--porcelain"))},
            "versions": versions,
            "machine": self.machine,
            "settings": self.settings,
            "cases": [c.to_json() for c in self.cases],
            "valid": all(c.valid for c in self.cases),
        }

    def save(self) -> Path:
        """Write NAME.json and NAME.md atomically; returns the JSON path."""
        self.results_dir.mkdir(parents=True, exist_ok=True)
        doc = self.to_json()
        path = self.results_dir / f"{self.name}.json"
        _atomic_write(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")
        _atomic_write(self.results_dir / f"{self.name}.md", markdown(doc))
        if not self.quiet:
            print(f"recorded {path}", flush=True)
        return path


def _vcdn_version() -> str | None:
    try:
        return metadata.version("vcdn")
    except metadata.PackageNotFoundError:
        return None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """One recorded run, as written by Run.save."""
    doc = json.loads(Path(path).read_text())
    if doc.get("format") != FORMAT or "cases" not in doc:
        raise ValueError(f"{path} is not a bench result file of format {FORMAT}.")
    return doc


def load_all(results_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every recorded run in the results directory, by name."""
    d = results_dir or RESULTS_DIR
    return [load(p) for p in sorted(d.glob("*.json"))]


def markdown(doc: Mapping[str, Any]) -> str:
    """The short human summary written beside the JSON."""
    m = doc["machine"]
    dirty = " (dirty tree)" if doc["git"]["dirty"] else ""
    lines = [
        f"# bench.{doc['name']}",
        "",
        f"`{' '.join(doc['command'])}` at {doc['utc']} on commit "
        f"`{(doc['git']['commit'] or 'unknown')[:12]}`{dirty}.",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), kernel {m['kernel']}, "
        f"load average at start {m['loadavg']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()) + ".",
        "",
        "| case | ours (median) | theirs (median) | ratio | target | met | errors | correct |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in doc["cases"]:
        unit = f" {c['unit']}" if c["unit"] else ""
        ours = ", ".join(f"{k} {fmt(v)}" for k, v in c["median"]["ours"].items())
        theirs = ", ".join(f"{k} {fmt(v)}" for k, v in c["median"]["theirs"].items())
        ratio = "-" if c["ratio"] is None else f"{c['ratio']:.2f}×"
        target = "-" if c["target"] is None else (
            c["target"] if c["target_of"] == "ratio" else f"{c['target_of']} {c['target']}")
        met = {None: "-", True: "yes", False: "no"}[c["met"]]
        theirs = f"{theirs}{unit} ({c['server'] or 'theirs'})" if theirs else "-"
        lines.append(f"| {c['name']} | {ours}{unit} | {theirs} | {ratio} | {target} | {met} | "
                     f"{c['errors']} | {'yes' if c['correct'] else 'NO'} |")
    notes = [f"- {c['name']}: {c['notes']}" for c in doc["cases"] if c["notes"]]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"
