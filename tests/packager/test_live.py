"""`vcdn live` for real: ffmpeg on a lavfi source paced at real time, PUT to a running
`vcdn origin`; one pipeline that ends into a VOD title, and two redundant pipelines of
which one is killed with SIGKILL while ffmpeg reads the live stream."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
TOKEN = "live-test-token"
SOURCE = "lavfi:testsrc2=size=256x144:rate=30{duration}[out0];sine=frequency=440{duration}[out1]"


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "origin"
    root.mkdir()
    env = {
        **os.environ, "PYTHONUNBUFFERED": "1",
        "VCDN_ORIGIN_INGEST_TOKEN_SHA256": hashlib.sha256(TOKEN.encode()).hexdigest(),
        "VCDN_ORIGIN_LIVE_GRACE": "5",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "vcdn.cli", "origin", "--root", str(root), "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
    )
    assert proc.stdout is not None
    match = re.search(r"listening on (http://\S+)", proc.stdout.readline())
    assert match, "origin did not start"
    try:
        yield match.group(1), root
    finally:
        proc.terminate()
        proc.wait(10)


def live(origin_url: str, title: str, duration: str = "", *extra: str) -> subprocess.Popen[str]:
    source = SOURCE.format(duration=f":duration={duration}" if duration else "")
    return subprocess.Popen(
        [sys.executable, "-m", "vcdn.cli", "live", source, "--title", title,
         "--origin", origin_url, "--ladder", "144,90", "--segment-seconds", "1",
         "--window", "20", "--preset", "ultrafast", "--progress-interval", "1", *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "VCDN_INGEST_TOKEN": TOKEN},
    )


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.read().decode()


def msns(playlist: str) -> list[int]:
    return [int(m) for m in re.findall(r"^seg_(\d+)\.m4s$", playlist, re.M)]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_event_that_ends_becomes_a_vod_title_ffmpeg_plays(origin) -> None:
    url, root = origin
    proc = live(url, "ev", "4")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "it is now a VOD title" in out
    assert re.search(r"live ev: edge #\d+ at \d\d:\d\d:\d\dZ, drift [+-]\d+\.\d s, dropped \d+ "
                     r"frames", err), err
    playlist = get(f"{url}/v/ev/144p/index.m3u8")
    assert playlist.rstrip().endswith("#EXT-X-ENDLIST") and "#EXT-X-PROGRAM-DATE-TIME:" in playlist
    numbers = msns(playlist)
    assert len(numbers) == 4 and numbers == list(range(numbers[0], numbers[0] + 4))
    # The shared epoch: MSN N of 1 s segments starts N seconds after 1970.
    assert abs(numbers[0] - time.time()) < 60
    assert (root / "ev" / "manifest.json").is_file()
    play = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", f"{url}/v/ev/master.m3u8", "-map", "0", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60,
    )
    assert play.returncode == 0 and not play.stderr.strip(), play.stderr
    check_vod_title(root / "ev", numbers)


def check_vod_title(d: Path, numbers: list[int]) -> None:
    """The VOD title an event with sound became, checked as `vcdn package`'s are: the
    sound is its own rendition (the master's audio group, on the video's numbers), the
    static MPD is schema-valid and names exactly the HLS files, ffprobe reads it, and
    manifest.json lists every file with its size and sha256."""
    import m3u8

    from tests.packager.dashcheck import mpd_files, schema_errors

    master = m3u8.load(str(d / "master.m3u8"))
    (audio,) = [m for m in master.media if m.type == "AUDIO"]
    assert audio.uri == "audio/index.m3u8" and audio.default == "YES"
    for variant in master.playlists:
        assert variant.stream_info.audio == audio.group_id
        assert variant.stream_info.codecs.endswith(",mp4a.40.2")
    hls: set[str] = set()
    for uri in [v.uri for v in master.playlists] + [audio.uri]:
        pl = m3u8.load(str(d / uri))
        assert pl.is_endlist and [int(s.uri[4:-4]) for s in pl.segments] == numbers
        base = Path(uri).parent
        hls |= {(base / pl.segments[0].init_section.uri).as_posix()}
        hls |= {(base / s.uri).as_posix() for s in pl.segments}
    text = (d / "manifest.mpd").read_text()
    assert schema_errors(text) == [] and 'type="static"' in text
    assert mpd_files(d / "manifest.mpd") == hls
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(d / "manifest.mpd")],
        capture_output=True, text=True, timeout=60,
    )
    kinds = sorted(st["codec_type"] for st in json.loads(probe.stdout)["streams"])
    assert kinds == ["audio", "video", "video"], probe.stderr
    manifest = json.loads((d / "manifest.json").read_text())
    on_disk = sorted(p.relative_to(d).as_posix() for p in d.rglob("*")
                     if p.is_file() and p.name not in ("manifest.json", "live.json"))
    assert sorted(f["path"] for f in manifest["files"]) == on_disk
    for f in manifest["files"]:
        data = (d / f["path"]).read_bytes()
        assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()


def test_killing_either_pipeline_loses_no_segment(origin) -> None:
    url, _ = origin
    a, b = live(url, "ev2"), live(url, "ev2")
    reader = None
    try:
        playlist_url = f"{url}/v/ev2/144p/index.m3u8"

        def published(n: int) -> bool:
            try:
                return len(msns(get(playlist_url))) >= n
            except OSError:
                return False

        wait_for(lambda: published(3), 40, "both pipelines to publish")
        reader = subprocess.Popen(
            ["ffmpeg", "-v", "error", "-i", playlist_url, "-t", "8", "-f", "null", "-"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        time.sleep(random.uniform(1.0, 3.0))
        victim, survivor = random.choice([(a, b), (b, a)])
        before = msns(get(playlist_url))[-1]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
        wait_for(lambda: msns(get(playlist_url))[-1] >= before + 5, 30, "the survivor to go on")
        numbers = msns(get(playlist_url))
        assert numbers == list(range(numbers[0], numbers[-1] + 1)), numbers
        assert "#EXT-X-GAP" not in get(playlist_url)
        # The audio rendition too, by the same rules.
        sound = get(f"{url}/v/ev2/audio/index.m3u8")
        heard = msns(sound)
        assert heard == list(range(heard[0], heard[-1] + 1)) and "#EXT-X-GAP" not in sound
        assert abs(heard[-1] - numbers[-1]) <= 1
        assert survivor.poll() is None
        _, read_err = reader.communicate(timeout=40)
        assert reader.returncode == 0 and not read_err.strip(), read_err
    finally:
        for proc in (a, b, reader):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
