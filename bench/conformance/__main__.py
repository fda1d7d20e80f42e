"""`python -m bench.conformance`: the HTTP caching conformance suite (npm
``http-cache-tests``, pinned) against `vcdn edge --auth none` and nginx ``proxy_cache`` +
``proxy_cache_revalidate``, one origin, the same run.

Writes the per-test outcomes of both caches to ``--out`` (edge.json, nginx.json, and
summary.json with the counts and the required failures) and the judged figures to
bench/results/conformance.json: tests passed by the edge (target >= 180), against nginx,
and the number of required tests nginx passes but the edge fails (target 0).

    python -m bench.conformance                 # both caches
    python -m bench.conformance --no-nginx      # the edge alone
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from bench.conformance import suite
from bench.record import RESULTS_DIR, Run

#: Issue 13's targets for release 0.4.5.
PASSED_TARGET = 180


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.conformance", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "conformance",
                   help="directory for the per-test results (default bench/results/conformance)")
    p.add_argument("--no-nginx", action="store_true", help="run the edge only")
    p.add_argument("--no-record", action="store_true", help="do not write bench/results")
    p.add_argument("--work", type=Path, help="keep the processes' logs here (default: a temp dir)")
    args = p.parse_args(argv)
    if not args.no_nginx and shutil.which("nginx") is None:
        p.error("nginx is not installed (make bench-tools), or pass --no-nginx")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vcdn-conformance-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with suite.origin(work) as up:
            with suite.edge(up, work) as base:
                ours = suite.run_client(base, args.out / "edge.json")
            theirs = None
            if not args.no_nginx:
                with suite.nginx(up, work) as base:
                    theirs = suite.run_client(base, args.out / "nginx.json")
    print(f"edge:  {ours.line()}")
    if theirs is not None:
        print(f"nginx: {theirs.line()}")
    # Required tests nginx passes that the edge does not, whatever the edge's outcome
    # (failed, a setup error, or a dependency that did not pass).
    nginx_passes = set(theirs.ids("passed", kind="required")) if theirs is not None else set()
    edge_passes = set(ours.ids("passed"))
    behind = sorted(nginx_passes - edge_passes)
    summary = {
        "package": f"http-cache-tests {suite.VERSION}",
        "edge": ours.counts,
        "nginx": theirs.counts if theirs is not None else None,
        "edge_required_failures": {i: ours.detail(i) for i in ours.required_failures()},
        "required_failures_nginx_passes": behind,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for test_id in ours.required_failures():
        print(f"  required failure: {test_id}: {ours.detail(test_id)[:120]}")
    for test_id in behind:
        print(f"  nginx passes, the edge does not: {test_id}")
    if not args.no_record:
        run = Run("conformance", versions={"http-cache-tests": suite.VERSION})
        run.case("passed", ours={"passed": [ours.passed]},
                 theirs={"passed": [theirs.passed]} if theirs is not None else None,
                 server="nginx" if theirs is not None else None, ratio_of="passed",
                 target=f">= {PASSED_TARGET}", target_of="passed", unit="tests",
                 title="http-cache-tests passed (edge proxy mode)")
        run.case("required_behind_nginx", ours={"tests": [len(behind)]}, target="== 0",
                 target_of="tests", unit="tests", notes=", ".join(behind),
                 title="required tests nginx passes and the edge fails")
        run.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
