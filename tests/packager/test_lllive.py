"""`vcdn live --low-latency` for real: ffmpeg paced at real time, parts streamed to a
running `vcdn origin`, a blocking playlist request answered by the next part, and the
event ending as a VOD title ffmpeg plays."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request

import pytest

from tests.packager.test_live import get, live, msns, origin, wait_for

pytestmark = pytest.mark.slow
__all__ = ["origin"]


def test_low_latency_event_publishes_parts_as_they_are_made(origin) -> None:
    url, _root = origin
    proc = live(url, "ll", "6", "--low-latency", "--part-seconds", "0.25")
    try:
        playlist_url = f"{url}/v/ll/144p/index.m3u8"

        def has_parts() -> bool:
            try:
                return "#EXT-X-PART:" in get(playlist_url)
            except OSError:
                return False

        wait_for(has_parts, 40, "the first parts")
        text = get(playlist_url)
        assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES" in text
        assert re.search(r"#EXT-X-PART-INF:PART-TARGET=0\.2[0-9]", text), text
        assert re.search(r'#EXT-X-RENDITION-REPORT:URI="\.\./90p/index\.m3u8",LAST-MSN=\d+,'
                         r"LAST-PART=\d+", text), text
        hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part_(\d+)_(\d+)\.m4s"', text)
        assert hint, text
        msn, part = int(hint.group(1)), int(hint.group(2))
        # Block for the hinted part: answered once it exists, well within a segment.
        started = time.monotonic()
        with urllib.request.urlopen(f"{playlist_url}?_HLS_msn={msn}&_HLS_part={part}",
                                    timeout=5) as resp:
            blocked = resp.read().decode()
        assert time.monotonic() - started < 1.5
        assert f'URI="part_{msn}_{part}.m4s"' in blocked.split("PRELOAD-HINT")[0] or (
            f"part_{msn + 1}_0.m4s" in blocked
        ), blocked
        # Parts of one segment: INDEPENDENT on the first only (keyframes at segment starts).
        independent = re.findall(r'URI="part_\d+_(\d+)\.m4s",INDEPENDENT=YES', blocked)
        assert independent and set(independent) == {"0"}, blocked
        # The sound: its own rendition with parts of whole AAC frames, every one
        # independent, none longer than the target; reported beside the video.
        assert re.search(r'#EXT-X-RENDITION-REPORT:URI="\.\./audio/index\.m3u8"', blocked)
        sound = get(f"{url}/v/ll/audio/index.m3u8")
        audio_parts = re.findall(r"#EXT-X-PART:DURATION=([\d.]+),URI=\"[^\"]+\"(,INDEPENDENT=YES)?",
                                 sound)
        assert audio_parts and all(flag for _, flag in audio_parts), sound
        assert all(float(d) <= 0.25 for d, _ in audio_parts), sound
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    final = get(playlist_url)
    assert final.rstrip().endswith("#EXT-X-ENDLIST") and "EXT-X-PART" not in final
    numbers = msns(final)
    assert len(numbers) >= 4 and numbers == list(range(numbers[0], numbers[-1] + 1)), final
    assert msns(get(f"{url}/v/ll/audio/index.m3u8")) == numbers
    play = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", f"{url}/v/ll/master.m3u8", "-map", "0", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60,
    )
    assert play.returncode == 0 and not play.stderr.strip(), play.stderr
