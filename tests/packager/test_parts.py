"""The CMAF part cutter: property tests over synthetic fragment streams, and ffmpeg's own.

Synthetic streams are built box by box (moof/traf/tfhd/tfdt/trun + mdat) with keyframes
at every segment boundary and at random places in between, audio fragments interleaved
at random, and fed to the splitter in random chunks."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packager.parts import (
    AudioCutter,
    BoxError,
    BoxSplitter,
    Cutter,
    PartClosed,
    PartData,
    PartOpened,
    SegmentClosed,
    parse_fragment,
    parse_init,
    shift_fragment,
)
from vcdn.mp4 import NON_SYNC

VIDEO, AUDIO = 1, 2
VSCALE, ASCALE = 90000, 48000


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def full(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def init_segment() -> bytes:
    def trak(track_id: int, scale: int, handler: bytes) -> bytes:
        tkhd = full(b"tkhd", 0, 3, struct.pack(">IIII", 0, 0, track_id, 0) + bytes(64))
        mdhd = full(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, scale, 0) + bytes(4))
        hdlr = full(b"hdlr", 0, 0, struct.pack(">I4s", 0, handler) + bytes(13))
        return box(b"trak", tkhd + box(b"mdia", mdhd + hdlr))

    trex = b"".join(
        full(b"trex", 0, 0, struct.pack(">IIIII", t, 1, 0, 0, 0)) for t in (VIDEO, AUDIO)
    )
    moov = box(b"moov", trak(VIDEO, VSCALE, b"vide") + trak(AUDIO, ASCALE, b"soun")
               + box(b"mvex", trex))
    return box(b"ftyp", b"iso6" + bytes(4)) + moov


def fragment(seq: int, track: int, decode_time: int, duration: int, sync: bool,
             payload: bytes, per_sample: bool) -> bytes:
    flags = 0 if sync else NON_SYNC
    tfhd = full(b"tfhd", 0, 0x020000 | 0x8 | 0x20, struct.pack(">III", track, duration, flags))
    tfdt = full(b"tfdt", 1, 0, struct.pack(">Q", decode_time))
    if per_sample:  # one sample with its own duration, size and flags
        trun = full(b"trun", 0, 0x1 | 0x100 | 0x200 | 0x400,
                    struct.pack(">IiIII", 1, 0, duration, len(payload), flags))
    else:  # defaults from tfhd, first-sample-flags
        trun = full(b"trun", 0, 0x1 | 0x4, struct.pack(">IiI", 1, 0, flags))
    mfhd = full(b"mfhd", 0, 0, struct.pack(">I", seq))
    moof = box(b"moof", mfhd + box(b"traf", tfhd + tfdt + trun))
    return moof + box(b"mdat", payload)


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[tuple[bytes, bool, bool]], float, float, int]:
    """(fragments as (bytes, is_video, sync), segment s, part s, fps)."""
    fps = draw(st.sampled_from([25, 30, 50]))
    seg = draw(st.sampled_from([1.0, 2.0]))
    part = draw(st.sampled_from([0.2, 0.333, 0.5]))
    frames = draw(st.integers(min_value=1, max_value=int(fps * seg * 3.5)))
    gop = int(fps * seg)
    extra = draw(st.sets(st.integers(min_value=1, max_value=max(1, frames - 1)), max_size=3))
    per_sample = draw(st.booleans())
    vdur = VSCALE // fps
    out: list[tuple[bytes, bool, bool]] = []
    seq = 1
    audio_t = 0
    for i in range(frames):
        sync = i % gop == 0 or i in extra
        payload = draw(st.binary(min_size=1, max_size=40))
        out.append((fragment(seq, VIDEO, i * vdur, vdur, sync, payload, per_sample), True, sync))
        seq += 1
        for _ in range(draw(st.integers(min_value=0, max_value=2)) if i < frames - 1 else 0):
            payload = draw(st.binary(min_size=1, max_size=12))
            audio = fragment(seq, AUDIO, audio_t, 1024, True, payload, per_sample)
            out.append((audio, False, True))
            audio_t += 1024
            seq += 1
    return out, seg, part, fps


def cut(stream: bytes, seg: float, part: float, fps: float, chunks: list[int]) -> tuple[
    list[object], int
]:
    splitter = BoxSplitter()
    got: list[tuple[bytes, bytes]] = []
    pos = 0
    for size in chunks:
        got += splitter.feed(stream[pos : pos + size])
        pos += size
    got += splitter.feed(stream[pos:])
    assert splitter.pending == 0
    tracks = parse_init(got[0][1] + got[1][1])
    cutter = Cutter(tracks, seg, part, fps)
    events: list[object] = []
    moof = b""
    for kind, data in got[2:]:
        if kind == b"moof":
            moof = data
        else:
            events += cutter.feed(parse_fragment(moof + data, tracks))
    events += cutter.finish()
    return events, len(got)


def first_video_sync(part: bytes) -> bool | None:
    tracks = parse_init(init_segment())
    splitter = BoxSplitter()
    boxes = splitter.feed(part)
    assert splitter.pending == 0, "a part ends inside a box"
    kinds = [k for k, _ in boxes]
    assert kinds == [b"moof", b"mdat"] * (len(kinds) // 2), "a part is whole fragments"
    for i in range(0, len(boxes), 2):
        run = parse_fragment(boxes[i][1] + boxes[i + 1][1], tracks).run(VIDEO)
        if run is not None:
            return run.first_sync
    return None


@settings(max_examples=150, deadline=None)
@given(streams(), st.lists(st.integers(min_value=1, max_value=300), max_size=40))
def test_parts_concatenate_on_sample_boundaries_independent_at_keyframes(
    generated: tuple[list[tuple[bytes, bool, bool]], float, float, int], chunks: list[int]
) -> None:
    frags, seg, part_s, fps = generated
    stream = init_segment() + b"".join(f for f, _, _ in frags)
    events, _ = cut(stream, seg, part_s, fps, chunks)
    parts: dict[tuple[int, int], bytearray] = {}
    flags: dict[tuple[int, int], bool] = {}
    segments: dict[int, list[tuple[int, int]]] = {}
    closed: set[tuple[int, int]] = set()
    for e in events:
        if isinstance(e, PartOpened):
            key = (e.msn, e.index)
            assert key not in parts
            parts[key] = bytearray(e.data)
            flags[key] = e.independent
            segments.setdefault(e.msn, []).append(key)
        elif isinstance(e, PartData):
            assert (e.msn, e.index) not in closed
            parts[(e.msn, e.index)] += e.data
        elif isinstance(e, PartClosed):
            closed.add((e.msn, e.index))
            assert e.duration <= part_s + 1.0 / fps + 1e-6
        elif isinstance(e, SegmentClosed):
            assert [i for _, i in segments[e.msn]] == list(range(e.parts))
    assert closed == set(parts)
    # Every fragment went into exactly one part, in order.
    assert b"".join(parts[k] for s in sorted(segments) for k in segments[s]) == b"".join(
        f for f, _, _ in frags
    )
    syncs = {f for f, video, sync in frags if video and sync}
    for key, data in parts.items():
        first = first_video_sync(bytes(data))
        assert first is not None, "every part holds a video frame"
        assert flags[key] == first, "INDEPENDENT exactly when the part starts with a keyframe"
    # Every keyframe starts a part, and every segment starts with one.
    starts = set()
    for key, data in parts.items():
        tracks = parse_init(init_segment())
        boxes = BoxSplitter().feed(bytes(data))
        for i in range(0, len(boxes), 2):
            frag = boxes[i][1] + boxes[i + 1][1]
            if parse_fragment(frag, tracks).run(VIDEO) is not None:
                starts.add(frag)
                break
        if key[1] == 0:
            assert flags[key], "a segment starts with a keyframe"
    assert syncs <= starts


def test_segment_numbers_follow_the_shared_epoch() -> None:
    frames = [fragment(i + 1, VIDEO, i * 3000, 3000, i % 60 == 0, b"x", False) for i in range(130)]
    tracks = parse_init(init_segment())
    base = 882350000 * 2 * VSCALE  # a slot of 2 s segments
    cutter = Cutter(tracks, 2.0, 0.333, 30.0)
    closed = []
    for data in frames:
        frag = shift_fragment(parse_fragment(data, tracks), {VIDEO: base})
        closed += [e for e in cutter.feed(frag) if isinstance(e, SegmentClosed)]
    assert [(e.msn, e.parts) for e in closed] == [(882350000, 6), (882350001, 6)]
    assert all(abs(e.duration - 2.0) < 1e-9 for e in closed)


def test_a_stream_that_does_not_start_on_a_keyframe_waits_for_one() -> None:
    tracks = parse_init(init_segment())
    cutter = Cutter(tracks, 2.0, 0.333, 30.0)
    events = []
    for i in range(5):
        data = fragment(i + 1, VIDEO, i * 3000, 3000, i == 3, b"v", True)
        events += cutter.feed(parse_fragment(data, tracks))
    opened = [e for e in events if isinstance(e, PartOpened)]
    assert [(e.index, e.independent) for e in opened] == [(0, True)]


def audio_init() -> bytes:
    """An audio rendition's init segment: one sound track."""
    tkhd = full(b"tkhd", 0, 3, struct.pack(">IIII", 0, 0, AUDIO, 0) + bytes(64))
    mdhd = full(b"mdhd", 0, 0, struct.pack(">IIII", 0, 0, ASCALE, 0) + bytes(4))
    hdlr = full(b"hdlr", 0, 0, struct.pack(">I4s", 0, b"soun") + bytes(13))
    trex = full(b"trex", 0, 0, struct.pack(">IIIII", AUDIO, 1, 0, 0, 0))
    moov = box(b"moov", box(b"trak", tkhd + box(b"mdia", mdhd + hdlr)) + box(b"mvex", trex))
    return box(b"ftyp", b"iso6" + bytes(4)) + moov


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([1.0, 2.0]), st.sampled_from([0.2, 0.25, 0.333, 0.5]),
       st.integers(min_value=0, max_value=2047), st.integers(min_value=1, max_value=400),
       st.booleans())
def test_audio_parts_fit_the_target_and_segments_keep_to_the_slot_boundaries(
    seg: float, part: float, lead: int, frames: int, per_sample: bool
) -> None:
    """AAC frames (1024 samples at 48 kHz) from a little before a slot boundary: every
    part independent, whole frames, never longer than `part_seconds`; the parts of a
    segment concatenate to it; segment N opens at the first frame at or after N x SEG
    (less half a frame), numbers consecutive from the slot, so the audio never drifts
    off the video's boundaries."""
    tracks = parse_init(audio_init())
    slot = 900_000
    base = round(slot * seg * ASCALE) - lead  # encoder priming: a little before the slot
    cutter = AudioCutter(tracks, seg, part)
    events: list[object] = []
    for i in range(frames):
        data = fragment(i + 1, AUDIO, base + i * 1024, 1024, True, bytes([i % 256]), per_sample)
        events += cutter.feed(parse_fragment(data, tracks))
    events += cutter.finish()
    parts: dict[tuple[int, int], bytes] = {}
    starts: dict[int, float] = {}
    segments: list[SegmentClosed] = []
    t = base / ASCALE
    frame = 1024 / ASCALE
    for ev in events:
        if isinstance(ev, PartOpened):
            assert ev.independent
            parts[(ev.msn, ev.index)] = ev.data
            starts.setdefault(ev.msn, t)
        elif isinstance(ev, PartData):
            parts[(ev.msn, ev.index)] += ev.data
        elif isinstance(ev, PartClosed):
            assert ev.duration <= part + 1e-9 and ev.duration > 0
            t += ev.duration
        elif isinstance(ev, SegmentClosed):
            segments.append(ev)
    assert [s.msn for s in segments] == list(range(slot, slot + len(segments)))
    assert sum(len(b) for b in parts.values()) == sum(
        len(fragment(i + 1, AUDIO, 0, 1024, True, b"x", per_sample)) for i in range(frames))
    for msn, start in starts.items():
        if msn > slot:
            assert msn * seg - frame / 2 <= start + 1e-9 < msn * seg + frame / 2 + 1e-9


def test_an_init_with_neither_video_nor_sound_is_refused() -> None:
    assert [t.kind for t in parse_init(audio_init()).values()] == ["soun"]
    with pytest.raises(BoxError):
        parse_init(audio_init().replace(b"soun", b"text"))
    with pytest.raises(BoxError):
        Cutter(parse_init(audio_init()), 2.0, 0.333, 30.0)  # video parts need video


@pytest.mark.parametrize("junk", [
    b"\x00\x00\x00\x04moof",  # size below a header
    b"\x00\x00\x00\x00mdat",  # unbounded box in a live stream
    b"\xff\xff\xff\xffmoof",  # larger than any fragment
])
def test_hostile_box_headers_are_refused(junk: bytes) -> None:
    with pytest.raises(BoxError):
        BoxSplitter().feed(junk + bytes(16))


def test_truncated_trun_is_refused() -> None:
    good = fragment(1, VIDEO, 0, 3000, True, b"abc", True)
    bad = bytearray(good)
    # Claim 1000 samples in the trun: the table runs past its box.
    pos = bytes(bad).index(b"trun") + 8
    struct.pack_into(">I", bad, pos, 1000)
    with pytest.raises(BoxError):
        parse_fragment(bytes(bad), parse_init(init_segment()))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_ffmpeg_fragments_cut_into_decodable_segments(tmp_path: Path) -> None:
    """Real x264 + AAC through ffmpeg's fragmented MP4 muxer, one frame per fragment."""
    argv = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
        "-i", "testsrc2=size=160x90:rate=30", "-f", "lavfi", "-i", "sine=frequency=440",
        "-t", "4.5", "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast",
        "-tune", "zerolatency", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
        "-force_key_frames", "expr:gte(t,n_forced*2)", "-c:a", "aac", "-b:a", "48k",
        "-f", "mp4", "-movflags", "+empty_moov+default_base_moof+frag_every_frame",
        "-flush_packets", "1", "pipe:1",
    ]
    stream = subprocess.run(argv, check=True, capture_output=True, timeout=60).stdout
    splitter = BoxSplitter()
    boxes = splitter.feed(stream)
    assert [k for k, _ in boxes[:2]] == [b"ftyp", b"moov"]
    init = boxes[0][1] + boxes[1][1]
    tracks = parse_init(init)
    cutter = Cutter(tracks, 2.0, 0.333, 30.0)
    segments: dict[int, bytearray] = {}
    independent: list[tuple[int, int, bool]] = []
    moof = b""
    events: list[object] = []
    for kind, data in boxes[2:]:
        if kind == b"moof":
            moof = data
        elif kind == b"mdat":
            events += cutter.feed(parse_fragment(moof + data, tracks))
    events += cutter.finish()
    for e in events:
        if isinstance(e, PartOpened):
            segments.setdefault(e.msn, bytearray()).extend(e.data)
            independent.append((e.msn, e.index, e.independent))
        elif isinstance(e, PartData):
            segments[e.msn].extend(e.data)
    assert sorted(segments) == [0, 1, 2]
    assert [i for _, i, ind in independent if ind] == [0, 0, 0]
    # Ten frames a part; the first segment may end with a one-frame part (ffmpeg stretches
    # its first frame over the audio priming).
    assert sum(1 for m, _, _ in independent if m == 1) == 6
    assert sum(1 for m, _, _ in independent if m == 0) in (6, 7)
    for msn, data in segments.items():
        path = tmp_path / f"seg{msn}.mp4"
        path.write_bytes(init + bytes(data))
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames",
             "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
            check=True, capture_output=True, text=True, timeout=30,
        )
        frames = int(probe.stdout.strip().split(",")[0])
        assert frames == (60 if msn < 2 else 15), (msn, frames)
