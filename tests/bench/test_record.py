"""bench.record: the result files every benchmark writes, and the rule that a run with errors
or a failed correctness check gets no ratio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.record import Run, TargetError, fmt, load, load_all, meets, parse_target


def test_save_writes_json_and_markdown_with_the_contract_fields(tmp_path: Path) -> None:
    run = Run("steering", results_dir=tmp_path, quiet=True, versions={"gdnsd": "3.8.0"})
    run.case("uncached_v4", ours={"qps": [100.0, 120.0, 110.0]}, theirs={"qps": [200, 220, 210]},
             server="gdnsd", ratio_of="qps", target=">= 0.5", errors=0, correct=True,
             unit="queries/s", notes="every query a new /24")
    path = run.save()
    assert path == tmp_path / "steering.json"
    doc = json.loads(path.read_text())
    assert doc["name"] == "steering"
    assert doc["command"][:2] == ["python", "-m"] or doc["command"][0] == "python"
    assert doc["utc"].endswith("Z")
    assert set(doc["git"]) == {"commit", "dirty"}
    assert doc["versions"]["gdnsd"] == "3.8.0" and doc["versions"]["python"]
    assert {"nproc", "cpu_model", "kernel"} <= set(doc["machine"])
    (case,) = doc["cases"]
    assert case["samples"] == {"ours": {"qps": [100.0, 120.0, 110.0]},
                               "theirs": {"qps": [200.0, 220.0, 210.0]}}
    assert case["median"] == {"ours": {"qps": 110.0}, "theirs": {"qps": 210.0}}
    assert case["ratio"] == pytest.approx(110 / 210)
    assert case["met"] is True and case["errors"] == 0 and case["correct"] is True
    md = (tmp_path / "steering.md").read_text()
    assert "uncached_v4" in md and "0.52×" in md and "every query a new /24" in md
    assert load(path) == doc and load_all(tmp_path) == [doc]


@pytest.mark.parametrize(("errors", "correct"), [(3, True), (0, False), (1, False)])
def test_errors_or_a_failed_check_record_no_ratio_and_print_none(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], errors: int, correct: bool) -> None:
    run = Run("edge", results_dir=tmp_path)
    c = run.case("hits_16k", ours={"rps": [5.0]}, theirs={"rps": [1.0]}, server="nginx",
                 ratio_of="rps", target=">= 0.25", errors=errors, correct=correct)
    out = capsys.readouterr().out
    assert "NO RATIO" in out and "5.00x" not in out and "×" not in out
    assert c.ratio is None and c.met is False
    run.save()
    doc = load(tmp_path / "edge.json")
    assert doc["cases"][0]["ratio"] is None and doc["valid"] is False
    assert "5.00×" not in (tmp_path / "edge.md").read_text()


def test_a_target_on_one_of_our_metrics_rather_than_the_ratio(tmp_path: Path) -> None:
    run = Run("steering", results_dir=tmp_path, quiet=True)
    ok = run.case("p99", ours={"p99_ms": [2.0, 3.0, 9.0]}, target_of="p99_ms", target="< 5 ms")
    bad = run.case("p99_slow", ours={"p99_ms": [6.0]}, target_of="p99_ms", target="< 5 ms")
    assert ok.met is True and bad.met is False and ok.ratio is None


def test_no_target_means_met_is_unknown_not_true(tmp_path: Path) -> None:
    c = Run("x", results_dir=tmp_path, quiet=True).case(
        "fill", ours={"s": [1.0]}, theirs={"s": [2.0]}, ratio_of="s")
    assert c.met is None and c.ratio == 0.5


@pytest.mark.parametrize("bad", ["", "0.5", ">= x", "=> 1", "about 3"])
def test_a_target_that_cannot_be_judged_is_refused(bad: str) -> None:
    with pytest.raises(TargetError):
        parse_target(bad)


@pytest.mark.parametrize(("value", "target", "ok"), [
    (0.25, ">= 0.25", True), (0.249, ">= 0.25", False), (4.9, "< 5 ms", True), (5, "< 5", False),
    (150, "<= 150 MiB", True), (1.05, "<= 1.05", True),
])
def test_meets(value: float, target: str, ok: bool) -> None:
    assert meets(value, target) is ok


def test_case_arguments_that_would_record_nonsense_are_refused(tmp_path: Path) -> None:
    run = Run("x", results_dir=tmp_path, quiet=True)
    with pytest.raises(ValueError, match="ratio_of"):
        run.case("a", ours={"rps": [1]}, theirs={"rps": [1]}, ratio_of="qps")
    with pytest.raises(ValueError, match="ratio target"):
        run.case("b", ours={"rps": [1]}, target=">= 1")
    run.case("c", ours={"rps": [1]})
    with pytest.raises(ValueError, match="twice"):
        run.case("c", ours={"rps": [1]})
    with pytest.raises(ValueError, match="lower-case"):
        Run("../escape", results_dir=tmp_path)


def test_fmt_reads_like_a_table() -> None:
    got = [fmt(x) for x in (63412.4, 25.5, 2.554, 0.00123, None)]
    assert got == ["63,412", "25.5", "2.55", "0.00123", "-"]
