"""Strict decoding of the API contracts: errors name the field."""

from __future__ import annotations

import pytest

from vcdn.errors import ClientError
from vcdn.schemas import Heartbeat, Registration, TitleManifest, decode, encode

REG = {"id": "a1", "site": "s1", "public_url": "http://127.0.0.1:1", "capacity_bytes": 10}


def test_round_trip() -> None:
    reg = decode(Registration, {**REG, "prefixes": ["10.0.0.0/8"], "lat": 1})
    assert reg.lat == 1.0
    assert decode(Registration, encode(reg)) == reg


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must be a JSON object"),
        ({**REG, "extra": 1}, "unknown field 'extra'"),
        ({k: v for k, v in REG.items() if k != "site"}, "missing field 'site'"),
        ({**REG, "capacity_bytes": "10"}, "'capacity_bytes' must be an integer"),
        ({**REG, "capacity_bytes": True}, "'capacity_bytes' must be an integer"),
        ({**REG, "prefixes": "10.0.0.0/8"}, "'prefixes' must be a list"),
        ({**REG, "prefixes": [1]}, r"'prefixes\[0\]' must be a string"),
        ({**REG, "lat": float("nan")}, "finite"),
    ],
)
def test_registration_errors(data: object, message: str) -> None:
    with pytest.raises(ClientError, match=message):
        decode(Registration, data)


def test_nested_errors_have_paths() -> None:
    with pytest.raises(ClientError, match=r"'load\.connections' must be an integer"):
        decode(Heartbeat, {"state": "healthy", "load": {"connections": 1.5}})
    with pytest.raises(ClientError, match="must be one of"):
        decode(Heartbeat, {"state": "sleepy"})
    with pytest.raises(ClientError, match=r"'title_requests.t1' must be an integer"):
        decode(Heartbeat, {"state": "healthy", "title_requests": {"t1": "x"}})


def test_title_manifest_total_bytes() -> None:
    m = decode(TitleManifest, {
        "title": "t", "duration": 6, "segment_seconds": 2, "format": "fmp4", "single_file": False,
        "renditions": [], "files": [{"path": "a", "size": 3, "sha256": "x"},
                                    {"path": "b", "size": 4, "sha256": "y"}],
    })
    assert m.total_bytes == 7
