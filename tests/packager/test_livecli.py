"""`vcdn live` refuses what it cannot run with one clear line, before any encoding."""

from __future__ import annotations

import pytest

from packager import livecli


def test_without_a_token_nothing_is_published(monkeypatch, capsys) -> None:
    monkeypatch.delenv("VCDN_INGEST_TOKEN", raising=False)
    monkeypatch.delenv("VCDN_CONTROL_TOKEN", raising=False)
    code = livecli.main(["lavfi:testsrc2", "--title", "t", "--origin", "http://127.0.0.1:1"])
    assert code == 1 and "VCDN_INGEST_TOKEN" in capsys.readouterr().err


def test_an_unreadable_source_is_one_line(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setenv("VCDN_INGEST_TOKEN", "t")
    code = livecli.main([str(tmp_path / "nope.mp4"), "--title", "t",
                         "--origin", "http://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 1 and "cannot be read" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://x/y", "--title", "t", "--origin", "http://o"], "not a live protocol"),
        (["lavfi:x", "--title", "t", "--origin", "ftp://o"], "not an http"),
        (["lavfi:x", "--title", "t", "--origin", "http://o", "--segment-seconds", "0.2"],
         "outside"),
        (["lavfi:x", "--title", "../t", "--origin", "http://o"], "not a valid title"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        livecli.main(args)
    assert exc.value.code == 2 and message in capsys.readouterr().err
