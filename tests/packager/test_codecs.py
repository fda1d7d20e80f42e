"""RFC 6381 codec strings from decoder configurations (avcC, Annex B SPS, AAC ASC)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from packager.codecs import (
    CodecError,
    aac_codec,
    aac_codec_from_config,
    avc_codec,
    avc_codec_from_profile,
    parse_hexdump,
)

# Dumps as ffprobe -show_data prints them, taken from x264 output.
AVCC_DUMP = (
    "\n00000000: 0164 000d ffe1 0019 6764 000d acd9 4141  .d......gd....AA\n"
    "00000010: fb01 1000 0003 0010 0000 0303 c0f1 4299  ..............B.\n"
    "00000020: 6001 0004 68ef bcb0 fdf8 f800            `...h.......\n"
)
ANNEXB_DUMP = (
    "\n00000000: 0000 0167 6400 0cac d943 04ec 0440 0000  ...gd....C...@..\n"
    "00000010: 0300 4000 000f 03c5 0a65 8000 0000 0168  ..@......e.....h\n"
    "00000020: efbc b0                                  ...\n"
)
ASC_DUMP = "\n00000000: 1188 56e5 00                             ..V..\n"


def ffprobe_style_dump(data: bytes) -> str:
    lines = [""]
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        groups = " ".join(chunk[i : i + 2].hex() for i in range(0, len(chunk), 2))
        ascii_col = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{off:08x}: {groups:<39}  {ascii_col}")
    return "\n".join(lines) + "\n"


def test_hexdump_of_an_avcc_record_gives_its_bytes() -> None:
    data = parse_hexdump(AVCC_DUMP)
    assert len(data) == 44 and data[:4] == bytes.fromhex("0164000d")


@given(st.binary(max_size=200))
def test_hexdump_round_trips_any_bytes(data: bytes) -> None:
    assert parse_hexdump(ffprobe_style_dump(data)) == data


@pytest.mark.parametrize(
    ("dump", "codec"),
    [
        (AVCC_DUMP, "avc1.64000d"),  # High, level 1.3, from an fMP4 init segment
        (ANNEXB_DUMP, "avc1.64000c"),  # High, level 1.2, SPS from an MPEG-TS stream
    ],
)
def test_avc_codec_reads_profile_constraints_and_level(dump: str, codec: str) -> None:
    assert avc_codec(parse_hexdump(dump)) == codec


def test_avc_codec_finds_the_sps_after_other_nal_units() -> None:
    aud = b"\x00\x00\x00\x01\x09\xf0"
    sps = b"\x00\x00\x01\x67\x42\xc0\x1e\xda"
    assert avc_codec(aud + sps) == "avc1.42c01e"


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x01\x68\xee", b"\x00\x00\x01\x67\x42", b"\x02"])
def test_avc_codec_refuses_bytes_without_an_sps(data: bytes) -> None:
    with pytest.raises(CodecError):
        avc_codec(data)


@pytest.mark.parametrize(
    ("profile", "level", "codec"),
    [("High", 31, "avc1.64001f"), ("Main", 40, "avc1.4d0028"),
     ("Constrained Baseline", 30, "avc1.42c01e")],
)
def test_avc_codec_from_profile_names(profile: str, level: int, codec: str) -> None:
    assert avc_codec_from_profile(profile, level) == codec


@pytest.mark.parametrize(("profile", "level"), [("Unknown", 31), ("High", 0), ("High", -99)])
def test_avc_codec_from_profile_refuses_unknowns(profile: str, level: int) -> None:
    with pytest.raises(CodecError):
        avc_codec_from_profile(profile, level)


@pytest.mark.parametrize(
    ("config", "codec"),
    [
        (parse_hexdump(ASC_DUMP), "mp4a.40.2"),  # AAC-LC 48 kHz stereo from ffmpeg's encoder
        (bytes([0x2B, 0x92]), "mp4a.40.5"),  # HE-AAC (SBR)
        (bytes([0xF8, 0xE0]), "mp4a.40.39"),  # escaped object type: 32 + 7 = ER AAC ELD
    ],
)
def test_aac_codec_from_the_audio_specific_config(config: bytes, codec: str) -> None:
    assert aac_codec_from_config(config) == codec


@pytest.mark.parametrize("config", [b"", b"\xf8", b"\x00\x00"])
def test_aac_codec_refuses_broken_configs(config: bytes) -> None:
    with pytest.raises(CodecError):
        aac_codec_from_config(config)


@pytest.mark.parametrize(("profile", "codec"), [("LC", "mp4a.40.2"), ("HE-AACv2", "mp4a.40.29")])
def test_aac_codec_from_profile_names(profile: str, codec: str) -> None:
    assert aac_codec(profile) == codec


def test_aac_codec_refuses_unknown_profiles() -> None:
    with pytest.raises(CodecError, match="unknown AAC profile"):
        aac_codec("None")
