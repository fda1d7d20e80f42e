"""Fill planning, pure: order, sources, what is missing, what to unpin, what to refuse."""

from __future__ import annotations

import pytest

from appliance.fill_plan import Source, plan, safe_path, sources_for, to_unpin
from vcdn.schemas import FileEntry, FillManifest, FillTitle

SHA = "ab" * 32


def title(name: str, paths: list[str], peers: list[str] | None = None, score: float = 1.0
          ) -> FillTitle:
    files = [FileEntry(p, 10, SHA) for p in paths]
    return FillTitle(title=name, score=score, bytes=10 * len(files), files=files,
                     peers=peers or [])


def manifest(*titles: FillTitle) -> FillManifest:
    return FillManifest(appliance="a1", generated_at=0.0, capacity_bytes=10**9,
                        titles=list(titles))


def test_keeps_manifest_order_and_lists_only_missing_files() -> None:
    have = {("t2", "a")}
    p = plan(manifest(title("t1", ["a", "b"], score=9), title("t2", ["a"], score=3)),
             lambda t, f: (t, f.path) in have, "http://origin:8000", "http://me:8080")
    assert [w.title for w in p.work] == ["t1", "t2"]
    assert [f.path for f in p.work[0].missing] == ["a", "b"]
    assert p.work[1].complete and p.missing_bytes == 20


def test_peers_first_then_origin_never_ourselves_nor_twice() -> None:
    item = title("t", ["a"], peers=["http://p1:8080/", "http://me:8080", "http://p1:8080",
                                    "ftp://bad", "http://p2:8080"])
    srcs = sources_for(item, "http://origin:8000/base/", "http://me:8080")
    assert srcs == (Source("peer", "http://p1:8080"), Source("peer", "http://p2:8080"),
                    Source("origin", "http://origin:8000/base"))


def test_source_urls_sign_peers_and_quote_paths() -> None:
    assert Source("peer", "http://p:1").url("t", "v/a b.ts", "TOK") == "http://p:1/s/TOK/t/v/a%20b.ts"
    assert Source("peer", "http://p:1").url("t", "a.ts") == "http://p:1/v/t/a.ts"
    assert Source("origin", "http://o:1/x").url("t", "a.ts", "TOK") == "http://o:1/x/v/t/a.ts"


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../b", "a//b", ".hidden", "a\\b",
                                  "a/./b", "", "a\x00b"])
def test_unsafe_paths_reject_the_whole_title(path: str) -> None:
    assert not safe_path(path)
    p = plan(manifest(title("evil", ["ok.ts", path]), title("good", ["x.ts"])),
             lambda t, f: False, "http://o:1", "http://me:1")
    assert [w.title for w in p.work] == ["good"]
    assert p.rejected[0][0] == "evil"


def test_bad_title_ids_and_bad_digests_are_refused() -> None:
    bad_sha = FillTitle("t", 1.0, 10, [FileEntry("a", 10, "xyz")])
    p = plan(manifest(title("../up", ["a"]), bad_sha), lambda t, f: False, "http://o:1",
             "http://me:1")
    assert not p.work and {r[0] for r in p.rejected} == {"../up", "t"}


def test_titles_dropped_from_the_manifest_are_unpinned() -> None:
    assert to_unpin({"a", "b", "c"}, ["b", "d"]) == {"a", "c"}
