"""Property-based fuzzing of the running control server against its own OpenAPI document:
schemathesis generates valid and invalid requests; none may get a 5xx, an undocumented
status or content type, or a body that breaks the documented response schema."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.origin.control.conftest import APPLIANCE, BOOTSTRAP, OPERATOR, manifest, registration
from tests.origin.control.server import start_control

EXAMPLES: Final = int(os.environ.get("VCDN_FUZZ_EXAMPLES", "100"))
CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def _seed(url: str) -> None:
    """Some data, so that generated reads find lists and fill manifests that are not empty."""
    op = {"Authorization": f"Bearer {OPERATOR}"}
    ap = {"Authorization": f"Bearer {APPLIANCE}"}
    api = f"{url}/api/v1"
    requests.post(f"{api}/titles", json=manifest("t1", [100, 200]), headers=op, timeout=10)
    for a in ("a1", "a2"):
        requests.post(f"{api}/appliances", json=registration(a), headers=op, timeout=10)
        requests.put(
            f"{api}/appliances/{a}/heartbeat",
            headers=ap,
            timeout=10,
            json={"state": "healthy", "title_requests": {"t1": 3}},
        )


@pytest.mark.slow
def test_fuzzing_finds_no_server_error_and_no_schema_violation(db_url: str, tmp_path: Path) -> None:
    server = start_control(db_url, BOOTSTRAP, tmp_path)
    try:
        _seed(server.url)
        raw = requests.get(f"{server.url}/api/v1/openapi.json", timeout=10).json()
        schema = schemathesis.openapi.from_dict(raw)
        schema.config.update(base_url=server.url)
        strategy = st.one_of(
            schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE)
        )
        session = requests.Session()

        @hypothesis.given(case=strategy)
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.generate],
        )
        def fuzz(case: schemathesis.Case) -> None:
            token = APPLIANCE if case.path.endswith("/heartbeat") else OPERATOR
            case.call_and_validate(
                session=session,
                headers={"Authorization": f"Bearer {token}"},
                checks=CHECKS,
                timeout=10,
            )

        fuzz()
    finally:
        assert server.stop() == 0, (tmp_path / "control.stderr").read_text()
