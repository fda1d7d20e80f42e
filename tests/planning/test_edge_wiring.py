"""The edge's `eviction` setting chooses a policy of edge.policies; popularity by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.app import Edge
from edge.policies import LFU, S3FIFO, PopularityAware
from edge.policies.lru import LRU
from edge.settings import EdgeSettings
from vcdn.errors import ConfigError
from vcdn.settings import load_settings


def settings(tmp_path: Path, **env: str) -> EdgeSettings:
    base = {"VCDN_AUTH": "none", "VCDN_CACHE_DIR": str(tmp_path / "cache"),
            "VCDN_CAPACITY": "1MiB", "VCDN_UPSTREAM": "http://127.0.0.1:9"}
    return load_settings(EdgeSettings, None, env={**base, **env})


@pytest.mark.parametrize(
    ("value", "cls"),
    [(None, PopularityAware), ("lru", LRU), ("lfu", LFU), ("s3fifo", S3FIFO)],
)
def test_the_store_evicts_with_the_policy_the_setting_names(
    tmp_path: Path, value: str | None, cls: type
) -> None:
    env = {} if value is None else {"VCDN_EVICTION": value}
    edge = Edge(settings(tmp_path, **env))
    try:
        assert type(edge.store.policy) is cls
    finally:
        edge.store.close()


def test_an_unknown_policy_is_refused_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'popularity', 'lru', 'lfu', 's3fifo'"):
        settings(tmp_path, VCDN_EVICTION="mru")
