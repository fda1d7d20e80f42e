"""What is in a source file, from ffprobe: duration, the video stream, the audio stream.

`parse_source` is pure (ffprobe's JSON in, a `Source` or a `MediaError` out) so every
refusal is table-tested; `probe_source` adds the file checks and the ffprobe call. Each
refusal is one sentence naming the file and saying what is wrong with it, because the
person reading it is about to fix that file, not our code.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import ffmpeg

from packager.ladder import Geometry
from vcdn.errors import MediaError, VcdnError

FFPROBE: Final = "ffprobe"
INSTALL_HINT: Final = "install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg)"


@dataclass(frozen=True, slots=True)
class VideoStream:
    index: int
    codec: str
    width: int
    height: int
    sar: float
    fps: float
    rotation: int

    @property
    def geometry(self) -> Geometry:
        """The picture as displayed: ffmpeg auto-rotates, so a quarter turn swaps w and h."""
        if self.rotation % 180:
            return Geometry(self.height, self.width, 1.0 / self.sar, self.fps)
        return Geometry(self.width, self.height, self.sar, self.fps)


@dataclass(frozen=True, slots=True)
class AudioStream:
    index: int
    codec: str
    channels: int
    sample_rate: int


@dataclass(frozen=True, slots=True)
class Source:
    path: str
    duration: float
    video: VideoStream
    audio: AudioStream | None


def _rate(text: Any) -> float:
    """`"30000/1001"` → 29.97; 0.0 for ffprobe's unknowns (``0/0``, missing)."""
    try:
        num, _, den = str(text).partition("/")
        value = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return 0.0
    return out if math.isfinite(out) and out > 0 else 0.0


def _rotation(stream: dict[str, Any]) -> int:
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return int(_signed(side["rotation"])) % 360
    return int(_signed((stream.get("tags") or {}).get("rotate", 0))) % 360


def _signed(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _video(stream: dict[str, Any], name: str) -> VideoStream:
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if width <= 0 or height <= 0:
        raise MediaError(f"Source '{name}' has a video stream without a picture size.")
    sar = _rate(str(stream.get("sample_aspect_ratio") or "1/1").replace(":", "/")) or 1.0
    fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    if not fps or fps > 240:
        raise MediaError(f"Source '{name}' has no usable frame rate; re-mux it with one.")
    return VideoStream(
        index=int(stream["index"]),
        codec=str(stream.get("codec_name", "?")),
        width=width,
        height=height,
        sar=sar,
        fps=fps,
        rotation=_rotation(stream),
    )


def parse_source(data: dict[str, Any], name: str, *, live: bool = False) -> Source:
    """A `Source` from ``ffprobe -show_format -show_streams`` JSON; MediaError if unusable.
    A live source has no duration (0 here)."""
    streams = data.get("streams") or []
    videos = [
        s
        for s in streams
        if s.get("codec_type") == "video"
        # Cover art in audio files is a "video" stream of one picture: not a video.
        and not (s.get("disposition") or {}).get("attached_pic")
    ]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos:
        raise MediaError(f"Source '{name}' has no video stream; vcdn package needs one.")
    video = _video(videos[0], name)
    duration = _float((data.get("format") or {}).get("duration")) or _float(
        videos[0].get("duration")
    )
    if duration <= 0 and not live:
        raise MediaError(f"Source '{name}' has no known duration; it cannot be packaged as VOD.")
    audio = None
    if audios:
        a = audios[0]
        audio = AudioStream(
            index=int(a["index"]),
            codec=str(a.get("codec_name", "?")),
            channels=int(a.get("channels") or 0),
            sample_rate=int(a.get("sample_rate") or 0),
        )
    return Source(path=name, duration=duration, video=video, audio=audio)


def check_readable(path: Path) -> None:
    """Refuse what ffprobe would refuse with a less helpful message."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(f"Source '{path}' does not exist.") from None
    except OSError as exc:
        raise MediaError(f"Source '{path}' cannot be read: {exc.strerror}.") from None
    if stat.S_ISDIR(st.st_mode):
        raise MediaError(f"Source '{path}' is a directory, not a video file.")
    if not stat.S_ISREG(st.st_mode):
        # A pipe or device cannot be read twice (probe, then encode) and may never end.
        raise MediaError(f"Source '{path}' is not a regular file.")
    if not os.access(path, os.R_OK):
        raise MediaError(f"Source '{path}' cannot be read: permission denied.")
    if st.st_size == 0:
        raise MediaError(f"Source '{path}' is empty (0 bytes).")


def media_url(path: Path) -> str:
    """The name to hand ffmpeg: ``file:`` + absolute path, so that a name starting with
    ``-`` is not an option and one containing ``:`` is not taken for a protocol."""
    return f"file:{path.absolute()}"


def ffprobe_json(path: Path, *flags: str, what: str = "Source") -> dict[str, Any]:
    """Run ffprobe through ffmpeg-python (it adds -show_format -show_streams); errors
    become one-line VcdnErrors."""
    kwargs: dict[str, Any] = {"v": "error", **{name: None for name in flags}}
    try:
        return ffmpeg.probe(media_url(path), cmd=FFPROBE, **kwargs)  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise VcdnError(f"'{FFPROBE}' was not found on PATH; {INSTALL_HINT}.") from None
    except ffmpeg.Error as exc:
        raise MediaError(
            f"{what} '{path}' is not a media file ffprobe can read ({_reason(exc.stderr, path)})."
        ) from None


def _reason(stderr: bytes | None, path: Path) -> str:
    lines = [ln.strip() for ln in (stderr or b"").decode(errors="replace").splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return "no details from ffprobe"
    last = lines[-1]
    prefix = f"{media_url(path)}: "
    return last[len(prefix) :] if last.startswith(prefix) else last


def probe_source(path: Path) -> Source:
    """Check the file, probe it, and return what the packager needs to know."""
    check_readable(path)
    return parse_source(ffprobe_json(path), str(path))
