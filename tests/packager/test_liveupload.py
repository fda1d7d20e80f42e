"""The live uploader never sends an audio segment ahead of the video: audio segment N is
the stretch of video segment N, and when the input ends the audio muxer closes its last
milliseconds as a segment of its own that no video segment will join (the origin would
then list one more audio segment than video in the VOD title)."""

from __future__ import annotations

from pathlib import Path

from packager.ladder import Rung
from packager.liveupload import Uploader


class Recorder:
    """The origin's side of `liveupload.Sender`: what was PUT, in order."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def put(self, path: str, body: bytes, content_type: str) -> int:
        self.paths.append(path)
        return 201


def spool_playlist(directory: Path, numbers: range) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-TARGETDURATION:1",
             f"#EXT-X-MEDIA-SEQUENCE:{numbers.start}", '#EXT-X-MAP:URI="init.mp4"']
    for n in numbers:
        (directory / f"seg_{n}.m4s").write_bytes(b"media %d" % n)
        lines += ["#EXTINF:1.0,", f"seg_{n}.m4s"]
    (directory / "index.m3u8").write_text("\n".join(lines) + "\n")


def test_audio_waits_for_the_video_segment_of_its_number(tmp_path: Path) -> None:
    sender = Recorder()
    up = Uploader(sender, tmp_path, [Rung(256, 144, 200, 64)], 30.0, True, 1.0, 20.0,
                  announced=True)
    spool_playlist(tmp_path / "144p", range(10, 12))
    spool_playlist(tmp_path / "audio", range(10, 13))  # the muxer's last sliver: 12
    assert up.step() == 4
    assert sender.paths == ["144p/seg_10.m4s", "144p/seg_11.m4s", "audio/seg_10.m4s",
                            "audio/seg_11.m4s"]
    assert up.edge_msn == 11
    spool_playlist(tmp_path / "144p", range(10, 13))  # video 12 lands: audio 12 may go
    assert up.step() == 2
    assert sender.paths[4:] == ["144p/seg_12.m4s", "audio/seg_12.m4s"]
