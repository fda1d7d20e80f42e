"""The HTTP caching conformance suite (npm http-cache-tests 0.4.5) against `vcdn edge
--auth none`: real processes on loopback, the suite's own origin and client.

Fails below issue 13's target, and when a required test fails that docs/edge.md does not
list with its reason ("Conformance"). The comparison with nginx is bench.conformance."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.conformance import suite

TARGET = 180
DOCS = Path(__file__).resolve().parents[2] / "docs" / "edge.md"


def _documented_failures() -> set[str]:
    text = DOCS.read_text()
    section = text.split("### Conformance", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `([A-Za-z0-9=_-]+)` \|", section, flags=re.MULTILINE))


@pytest.mark.slow
def test_edge_passes_the_http_caching_conformance_suite(tmp_path: Path) -> None:
    with suite.origin(tmp_path) as up, suite.edge(up, tmp_path) as base:
        result = suite.run_client(base, tmp_path / "edge.json")
    print(f"http-cache-tests {suite.VERSION} against the edge: {result.line()}")
    assert result.passed >= TARGET, result.line()
    # Assertion failures are the cache's behaviour and must be documented; setup
    # failures and retries can also come from a loaded machine (a 3 s pause against a
    # 2 s lifetime), so they count against the target only.
    undocumented = {
        i: result.detail(i) for i in result.ids("failed", kind="required")
        if i not in _documented_failures()
    }
    assert not undocumented, f"required failures missing from docs/edge.md: {undocumented}"
