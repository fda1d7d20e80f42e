"""The README's performance table is exactly what bench/results/*.json give."""

from __future__ import annotations

from pathlib import Path

from bench import table
from bench.record import RESULTS_DIR, Run, load_all


def test_readme_table_matches_the_recorded_runs() -> None:
    """Every figure in the README's table comes from a recorded run (`make bench-table`)."""
    readme = table.README.read_text()
    assert table.BEGIN in readme and table.END in readme
    assert table.splice(readme, table.render(load_all(RESULTS_DIR))) == readme, (
        "README.md's performance table differs from bench/results; run `make bench-table`")


def test_every_recorded_run_is_traceable() -> None:
    for run in load_all(RESULTS_DIR):
        assert run["command"] and run["utc"] and run["git"]["commit"], run["name"]
        assert (RESULTS_DIR / f"{run['name']}.md").is_file(), run["name"]
        for case in run["cases"]:
            if case["errors"] or not case["correct"]:
                assert case["ratio"] is None, (run["name"], case["name"])


def test_a_case_with_errors_or_wrong_bytes_shows_no_ratio(tmp_path: Path) -> None:
    run = Run("edge", results_dir=tmp_path, quiet=True)
    run.case("ok", ours={"rps": [3.0]}, theirs={"rps": [4.0]}, server="nginx", ratio_of="rps",
             target=">= 0.5", unit="req/s")
    run.case("errs", ours={"rps": [9.0]}, theirs={"rps": [1.0]}, server="nginx",
             ratio_of="rps", target=">= 0.5", errors=2)
    run.case("wrong", ours={"rps": [9.0]}, theirs={"rps": [1.0]}, server="nginx",
             ratio_of="rps", target=">= 0.5", correct=False)
    run.save()
    lines = table.render(load_all(tmp_path)).splitlines()
    ok, errs, wrong = (next(x for x in lines if f"| {n} |" in x) for n in ("ok", "errs", "wrong"))
    assert "0.75× nginx (3.00 vs 4.00 req/s)" in ok and "| met |" in ok
    assert "no figure (2 errors)" in errs and "×" not in errs and "**not met**" in errs
    assert "correctness check failed" in wrong and "×" not in wrong


def test_check_mode_fails_on_a_stale_readme(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{table.BEGIN}\n| old | table |\n{table.END}\nrest\n")
    run = Run("edge", results_dir=tmp_path / "r", quiet=True)
    run.case("c", ours={"rps": 1})
    run.save()
    results = str(tmp_path / "r")
    assert table.main(["--check", "--readme", str(readme), "--results", results]) == 1
    assert table.main(["--readme", str(readme), "--results", results]) == 0
    assert "| `bench.edge` | c | 1.00 |" in readme.read_text()
    assert table.main(["--check", "--readme", str(readme), "--results", results]) == 0
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("\nrest\n")
