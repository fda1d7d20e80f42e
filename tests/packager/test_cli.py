"""`vcdn package` as a user runs it: messages, exit codes, progress, --force, --quiet,
interrupts and registration, through the real entry point where it matters."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

from packager.cli import main
from packager.publish import STAGING
from tests.conftest import ROOT, require_tool
from tests.packager.conftest import make_source
from vcdn.schemas import TitleManifest, decode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli-media")
    text = d / "notes.mp4"
    text.write_text("not a video\n")
    empty = d / "empty.mp4"
    empty.touch()
    return {
        "small": make_source(d / "small.mp4", seconds=3, size="160x120"),
        # Long enough that an interrupt lands mid-encode on any machine.
        "long": make_source(d / "long.mp4", seconds=20, size="320x240"),
        "audio": make_source(d / "audio.m4a", seconds=1, video=False),
        "text": text,
        "empty": empty,
        "missing": d / "missing.mp4",
    }


def cli(*args: str | Path, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real `vcdn package` entry point with stdout/stderr as pipes (not a tty)."""
    return subprocess.run(
        [sys.executable, "-m", "vcdn.cli", "package", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def published(root: Path) -> list[str]:
    """Titles in the origin root, and a check that no half-built title is left behind."""
    if not root.exists():
        return []
    staging = root / STAGING
    assert not staging.exists() or list(staging.iterdir()) == []
    return sorted(p.name for p in root.iterdir() if p.name != STAGING)


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("text", "is not a media file ffprobe can read (Invalid data found"),
        ("empty", "is empty (0 bytes)."),
        ("audio", "has no video stream; vcdn package needs one."),
        ("missing", "does not exist."),
    ],
)
def test_bad_sources_get_one_line_exit_1_and_publish_nothing(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
    message: str,
) -> None:
    root = tmp_path / "origin"
    code = main([str(media[name]), "--title", "t1", "--origin-root", str(root)])
    line = one_line_error(capsys.readouterr().err)
    assert code == 1
    assert line.startswith(f"vcdn package: Source '{media[name]}' ") and message in line
    assert published(root) == []


def test_an_unwritable_origin_root_gets_one_line_and_exit_1(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = main([str(media["small"]), "--title", "t1", "--origin-root", str(blocker / "origin")])
    line = one_line_error(capsys.readouterr().err)
    assert code == 1 and f"Origin root '{blocker / 'origin'}' is not writable" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--title", "../etc"], "is not a valid title id"),
        (["--title", "t1", "--ladder", "721"], "ladder height 721 is odd"),
        (["--title", "t1", "--ladder", "big"], "is not a height"),
        (["--title", "t1", "--segment-seconds", "0"], "outside 1..60 s"),
        (["--title", "t1", "--format", "webm"], "invalid choice: 'webm'"),
        (["--title", "t1", "--control", "ftp://x"], "is not an http:// or https:// URL"),
        ([], "the following arguments are required: --title"),
    ],
)
def test_bad_options_are_usage_errors(
    media: dict[str, Path], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main([str(media["small"]), *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_control_without_a_token_refuses_before_encoding(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("VCDN_CONTROL_TOKEN", raising=False)
    root = tmp_path / "origin"
    code = main([str(media["small"]), "--title", "t1", "--origin-root", str(root),
                 "--control", "http://127.0.0.1:9"])
    line = one_line_error(capsys.readouterr().err)
    assert code == 1 and "VCDN_CONTROL_TOKEN" in line and "nothing was packaged" in line
    assert published(root) == []


def test_a_missing_ffmpeg_binary_is_named_with_how_to_install_it(
    media: dict[str, Path], tmp_path: Path
) -> None:
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    root = tmp_path / "origin"
    run = cli(media["small"], "--title", "t1", "--origin-root", root,
              env={"PATH": str(empty_bin)})
    line = one_line_error(run.stderr)
    assert run.returncode == 1
    assert line == ("vcdn package: 'ffmpeg' was not found on PATH; install ffmpeg "
                    "(Debian/Ubuntu: apt-get install ffmpeg).")
    assert published(root) == []


def test_progress_is_plain_lines_when_not_a_terminal(media: dict[str, Path],
                                                     tmp_path: Path) -> None:
    root = tmp_path / "origin"
    run = cli(media["small"], "--title", "t1", "--origin-root", root, "--ladder", "120,96",
              "--segment-seconds", "1", "--progress-interval", "0")
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert lines and "\r" not in run.stderr and "\x1b" not in run.stderr
    percents = []
    for line in lines:
        assert line.startswith("packaging t1: "), line
        assert ", speed " in line and ", ETA " in line
        percents.append(int(line.split(": ")[1].split("%")[0]))
    assert percents == sorted(percents) and percents[-1] == 100
    assert run.stdout.startswith(f"Published title 't1' at {root / 't1'} ")
    assert "120p  160x120" in run.stdout and "avc1.64" in run.stdout
    assert published(root) == ["t1"]


def test_progress_is_a_bar_redrawn_in_place_on_a_terminal(media: dict[str, Path],
                                                          tmp_path: Path) -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vcdn.cli", "package", str(media["small"]), "--title", "t1",
             "--origin-root", str(tmp_path / "origin"), "--ladder", "96"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL,
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(120) == 0
    finally:
        os.close(master)
    text = b"".join(chunks).decode()
    assert text.startswith("\r") and text.endswith("\n")
    final = text.rstrip("\r\n").split("\r")[-1]
    assert re.fullmatch(r"t1 \[#{30}\] 100%  \d+\.\d\dx  ETA 0:00\x1b\[K", final), final


def test_quiet_prints_nothing_and_still_publishes(media: dict[str, Path],
                                                  tmp_path: Path) -> None:
    root = tmp_path / "origin"
    run = cli(media["small"], "--title", "t1", "--origin-root", root, "--ladder", "96",
              "--quiet")
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    assert published(root) == ["t1"]


def test_force_is_needed_to_replace_a_title_and_replaces_it(
    media: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "origin"
    base = [str(media["small"]), "--title", "t1", "--origin-root", str(root), "-q",
            "--segment-seconds", "1"]
    assert main([*base, "--ladder", "96"]) == 0
    first = (root / "t1" / "manifest.json").read_text()
    assert main([*base, "--ladder", "120"]) == 1
    line = one_line_error(capsys.readouterr().err)
    assert "Title 't1' already exists" in line and "--force" in line
    assert (root / "t1" / "manifest.json").read_text() == first
    assert main([*base, "--ladder", "120", "--force"]) == 0
    doc = decode(TitleManifest, json.loads((root / "t1" / "manifest.json").read_text()))
    assert [r.name for r in doc.renditions] == ["120p"]
    assert not (root / "t1" / "96p").exists()
    assert published(root) == ["t1"]


def start_long_run(media: dict[str, Path], root: Path) -> subprocess.Popen[str]:
    """Start packaging the long source and return once ffmpeg has written a segment."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcdn.cli", "package", str(media["long"]), "--title", "t1",
         "--origin-root", str(root), "--ladder", "240,144", "--segment-seconds", "1", "-q"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if list((root / STAGING).glob("*/240p/seg_*")):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"the run never started writing segments: {proc.communicate()}")


def ffmpeg_children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_publishes_nothing_and_cleans_up(
    media: dict[str, Path], tmp_path: Path, sig: signal.Signals
) -> None:
    root = tmp_path / "origin"
    proc = start_long_run(media, root)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert one_line_error(err) == "vcdn package: interrupted; nothing was published."
    assert published(root) == []


def test_a_killed_run_takes_ffmpeg_with_it_and_the_next_run_sweeps_its_build(
    media: dict[str, Path], tmp_path: Path
) -> None:
    root = tmp_path / "origin"
    proc = start_long_run(media, root)
    children = ffmpeg_children(proc.pid)
    assert children, "ffmpeg should be running as a child"
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{c}").exists() for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{c}").exists() for c in children), "ffmpeg outlived us"
    assert [p.name for p in root.iterdir()] == [STAGING]  # not published
    assert list((root / STAGING).iterdir())  # its build is left behind...
    assert main([str(media["small"]), "--title", "t2", "--origin-root", str(root), "-q",
                 "--ladder", "96"]) == 0
    assert published(root) == ["t2"]  # ...and the next run sweeps it


async def test_a_failed_registration_exits_1_but_the_title_stays_published(
    media: dict[str, Path], tmp_path: Path, aiohttp_server
) -> None:
    async def titles(request: web.Request) -> web.Response:
        return web.json_response({"detail": "packager role required"}, status=403)

    app = web.Application()
    app.router.add_post("/api/v1/titles", titles)
    server = await aiohttp_server(app)
    root = tmp_path / "origin"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vcdn.cli", "package", str(media["small"]), "--title", "t1",
        "--origin-root", str(root), "--ladder", "96", "-q", "--control", str(server.make_url("")),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "VCDN_CONTROL_TOKEN": "wrong"},
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    line = one_line_error(err.decode())
    assert proc.returncode == 1
    assert f"title 't1' is published at {root / 't1'}, but registering it failed" in line
    assert "403: packager role required" in line and "stays published" in line
    assert published(root) == ["t1"]


def test_registration_with_the_real_control_api(media: dict[str, Path], tmp_path: Path) -> None:
    """`vcdn control` in its own process; the catalog then serves what the packager wrote."""
    require_tool("curl")
    log = tmp_path / "control.log"
    control = subprocess.Popen(
        [sys.executable, "-m", "vcdn.cli", "control", "--db", f"sqlite:///{tmp_path}/c.db",
         "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
        env={**os.environ,
             "VCDN_CONTROL_TOKENS": "packager:pk-secret-0123456789,operator:op-secret-0123456789"},
    )
    try:
        assert control.stdout is not None
        line = control.stdout.readline()
        assert "listening on http://" in line, log.read_text()
        url = line.split("listening on ")[1].split()[0]
        root = tmp_path / "origin"
        run = cli(media["small"], "--title", "t1", "--origin-root", root, "--ladder", "96",
                  "-q", "--control", url, env={"VCDN_CONTROL_TOKEN": "pk-secret-0123456789"})
        assert run.returncode == 0, run.stderr
        curl = subprocess.run(
            ["curl", "-sf", "-H", "Authorization: Bearer op-secret-0123456789",
             f"{url}/api/v1/titles/t1"],
            capture_output=True, text=True, timeout=30,
        )
        assert curl.returncode == 0, curl.stderr
        catalog = json.loads(curl.stdout)
        published_doc = json.loads((root / "t1" / "manifest.json").read_text())
        assert catalog["files"] == published_doc["files"]
        assert catalog["renditions"] == published_doc["renditions"]
        assert catalog["title"] == "t1" and catalog["duration"] == published_doc["duration"]
    finally:
        control.terminate()
        control.wait(10)


def test_control_takes_several_replica_urls() -> None:
    from packager.cli import build_parser
    from packager.livecli import build_parser as live_parser

    args = build_parser().parse_args(
        ["src.mp4", "--title", "t1", "--control", "http://c1:8090,http://c2:8090",
         "--control", "http://c3:8090"]
    )
    assert args.control == ["http://c1:8090,http://c2:8090", "http://c3:8090"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["src.mp4", "--title", "t1", "--control", "http://c1,ftp://x"])
    live = live_parser().parse_args(
        ["lavfi:testsrc", "--title", "t1", "--origin", "http://o1:8080",
         "--control", "http://c1:8090", "--control", "http://c2:8090"]
    )
    assert live.control == ["http://c1:8090", "http://c2:8090"]
