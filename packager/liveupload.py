"""Publishing what ffmpeg writes into the spool: init segments, the event document, the
master playlist, then each segment as soon as ffmpeg has renamed it into place.

ffmpeg (``hls_flags=temp_file``) renames a segment into the spool only when it is whole
and lists it in the spool playlist only after that, so a segment the playlist names is
complete. The uploader never sends ffmpeg's media playlists: the origin builds them from
the segments it keeps, which may come from another pipeline.

An event with sound has its own audio rendition (``audio/``, `packager.livegraph`),
published like a video one; the master playlist names it as an ``EXT-X-MEDIA`` audio
group every variant refers to, and the event document (``audio``) tells the origin it
exists so that its DASH manifest has an audio adaptation set. Low-latency events have
the same audio rendition, whose parts and segments `packager.llpublish` sends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from packager.graph import AUDIO_CHANNELS, AUDIO_DIR, AUDIO_RATE
from packager.ladder import Rung
from packager.outputs import audio_codec_from_probe, codecs_from_probe
from packager.playlists import AudioRendition, Variant, master_playlist
from packager.probe import ffprobe_json
from vcdn.errors import ClientError, MediaError
from vcdn.hlsplaylist import PlaylistError, parse_media
from vcdn.schemas import LiveAudio, LiveEvent, Rendition, encode

SEGMENT_RE: Final = re.compile(r"^seg_(\d{1,15})\.m4s$")
PLAYLIST_VERSION: Final = 7  # RFC 8216 §7: EXT-X-MAP with fMP4 segments needs version 6+
MP4: Final = "video/mp4"


class Sender(Protocol):
    def put(self, path: str, body: bytes, content_type: str) -> int: ...


@dataclass(slots=True)
class RungState:
    """One rendition being published: a video rung, or the audio (`rung` None)."""

    rung: Rung | None
    init_sent: bool = False
    codecs: str | None = None
    last_msn: int = -1

    @property
    def name(self) -> str:
        return self.rung.name if self.rung is not None else AUDIO_DIR


@dataclass(slots=True)
class Uploader:
    sender: Sender
    spool: Path
    rungs: Sequence[Rung]
    fps: float
    has_audio: bool
    segment_seconds: float
    window: float
    sent: int = 0
    skipped: int = 0
    edge_msn: int = -1
    announced: bool = False
    part_seconds: float = 0.0  # low-latency: the part target announced in the event
    states: list[RungState] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.states = [RungState(r) for r in self.rungs]
        if self.has_audio:
            self.states.append(RungState(None))  # the sound is its own rendition

    @property
    def _audio_state(self) -> RungState | None:
        return next((st for st in self.states if st.rung is None), None)

    def audio_kbps(self) -> int:
        """The audio rendition's bitrate: the best rung's, as
        `packager.graph.audio_output_options` encodes it."""
        return max((r.audio_kbps for r in self.rungs), default=0)

    def renditions(self) -> list[Rendition]:
        """The video renditions; with a separate audio rendition each one's bandwidth and
        codecs include it (RFC 8216 §4.3.4.2), as `vcdn package`'s do."""
        out = []
        audio_st = self._audio_state
        audio = self.audio_kbps() if audio_st is not None else 0
        for st in self.states:
            r = st.rung
            if r is None:
                continue
            codecs = st.codecs or ""
            if audio_st is not None and audio_st.codecs:
                codecs = f"{codecs},{audio_st.codecs}"
            out.append(Rendition(
                name=r.name, width=r.width, height=r.height,
                bandwidth=(r.maxrate_kbps + audio) * 1000,
                average_bandwidth=(r.video_kbps + audio) * 1000,
                codecs=codecs, frame_rate=round(self.fps, 3),
                playlist=f"{r.name}/index.m3u8",
            ))
        return out

    def audio(self) -> LiveAudio | None:
        st = self._audio_state
        if st is None:
            return None
        return LiveAudio(name=AUDIO_DIR, bandwidth=self.audio_kbps() * 1000,
                         codecs=st.codecs or "", sampling_rate=AUDIO_RATE,
                         channels=AUDIO_CHANNELS, playlist=f"{AUDIO_DIR}/index.m3u8")

    def event(self, *, ended: bool) -> bytes:
        import json

        doc = LiveEvent(self.segment_seconds, self.window, self.renditions(), ended,
                        self.part_seconds, self.audio())
        return (json.dumps(encode(doc)) + "\n").encode()

    def master(self) -> bytes:
        audio = self.audio()
        group = None if audio is None else AudioRendition(
            AUDIO_DIR, audio.playlist, audio.channels)
        variants = [
            Variant(r.playlist, r.bandwidth, r.average_bandwidth, r.codecs, r.width, r.height,
                    r.frame_rate, audio=AUDIO_DIR if audio is not None else None)
            for r in self.renditions()
        ]
        return master_playlist(variants, PLAYLIST_VERSION, group).encode()

    def _read_inits(self) -> bool:
        """Codec strings from every rendition's init segment, once ffmpeg wrote them all."""
        for st in self.states:
            if st.codecs is not None:
                continue
            init = self.spool / st.name / "init.mp4"
            if not init.is_file() or init.stat().st_size == 0:
                return False
            data = ffprobe_json(init, "show_data", what="Encoded init segment")
            if st.rung is None:
                st.codecs = audio_codec_from_probe(data)
            else:
                st.codecs = codecs_from_probe(data, False)  # video only: CMAF
        return True

    def segment_sent(self, rendition: str, msn: int) -> None:
        """A segment went out another way (the low-latency streams, `packager.llpublish`)."""
        for st in self.states:
            if st.name == rendition:
                st.last_msn = max(st.last_msn, msn)
        self.sent += 1

    def step(self) -> int:
        """Send whatever is new; returns how many segments went out. Audio is sent only up
        to the newest video segment sent: audio segment N is the stretch of video
        segment N, and when the input ends the audio muxer closes its last few
        milliseconds as a segment of its own, which no video segment of that number will
        ever join. That segment may be on disk before ffmpeg has exited, so the rule holds
        in every step, not only in the last one."""
        if not self.announced:
            if not self._read_inits():
                return 0
            # The event first (it names the renditions), then what each rendition needs.
            self.sender.put("live.json", self.event(ended=False), "application/json")
            for st in self.states:
                init = self.spool / st.name / "init.mp4"
                self.sender.put(f"{st.name}/init.mp4", init.read_bytes(), MP4)
                st.init_sent = True
            self.sender.put("master.m3u8", self.master(), "application/vnd.apple.mpegurl")
            self.announced = True
        count = 0
        for st in sorted(self.states, key=lambda s: s.rung is None):  # video, then audio
            ready = self._ready(st)
            if st.rung is None:
                video = max((v.last_msn for v in self.states if v.rung is not None), default=-1)
                ready = [(msn, path) for msn, path in ready if msn <= video]
            for msn, path in ready:
                try:
                    body = path.read_bytes()
                except FileNotFoundError:
                    self.skipped += 1  # ffmpeg rotated it out before we got to it
                    st.last_msn = msn
                    continue
                try:
                    self.sender.put(f"{st.name}/{path.name}", body, MP4)
                except ClientError:
                    # The origin judged this copy bad or late; the other pipeline's may do.
                    self.skipped += 1
                st.last_msn = msn
                self.sent += 1
                count += 1
        self.edge_msn = min((st.last_msn for st in self.states), default=-1)
        return count

    def _ready(self, st: RungState) -> list[tuple[int, Path]]:
        directory = self.spool / st.name
        try:
            text = (directory / "index.m3u8").read_text()
        except OSError:
            return []
        try:
            playlist = parse_media(text)
        except PlaylistError:
            return []
        out = []
        for seg in playlist.segments:
            m = SEGMENT_RE.match(seg.uri)
            if m is None:
                raise MediaError(f"ffmpeg wrote an unexpected segment name {seg.uri!r}")
            msn = int(m.group(1))
            if msn > st.last_msn:
                out.append((msn, directory / seg.uri))
        return sorted(out)
