"""RFC 6381 codec strings for the master playlist's CODECS attribute, pure.

The strings come from the bytes that were encoded, not from what we asked the encoder for:
the H.264 decoder configuration (an ``avcC`` box in MP4, or the SPS in an Annex B stream)
carries profile_idc, the constraint flags and level_idc, which is exactly ``avc1.PPCCLL``
(RFC 6381 §3.3). A player uses it to decide whether it can decode a variant at all, so a
guess (``avc1.640028`` for everything) makes devices skip renditions they could play or
pick ones they cannot.
"""

from __future__ import annotations

import re
from typing import Final

# ISO/IEC 14496-3 audio object types for the AAC profiles ffprobe names.
AAC_OBJECT_TYPES: Final[dict[str, int]] = {
    "Main": 1,
    "LC": 2,
    "SSR": 3,
    "LTP": 4,
    "HE-AAC": 5,
    "HE-AACv2": 29,
    "LD": 23,
    "ELD": 39,
}
# Fallback when no decoder configuration is available: ffprobe's profile names.
AVC_PROFILES: Final[dict[str, tuple[int, int]]] = {
    "Constrained Baseline": (66, 0xC0),
    "Baseline": (66, 0x00),
    "Main": (77, 0x00),
    "Extended": (88, 0x00),
    "High": (100, 0x00),
    "High 10": (110, 0x00),
    "High 4:2:2": (122, 0x00),
    "High 4:4:4 Predictive": (244, 0x00),
}
_HEX_LINE: Final = re.compile(r"^[0-9a-fA-F]{8}:((?: [0-9a-fA-F]{2,4})+)")


class CodecError(ValueError):
    """The bytes do not hold a decoder configuration we can read."""


def parse_hexdump(text: str) -> bytes:
    """Bytes from ffprobe's ``-show_data`` hex dump (``00000000: 0164 000d ...  .d..``)."""
    out = bytearray()
    for line in text.splitlines():
        m = _HEX_LINE.match(line.strip())
        if m:
            # The hex groups end at the double space before the ASCII column.
            hex_part = m.group(1).split("  ")[0]
            out += bytes.fromhex(hex_part.replace(" ", ""))
    return bytes(out)


def _avc_triplet(profile: int, constraints: int, level: int) -> str:
    return f"avc1.{profile:02x}{constraints:02x}{level:02x}"


def avc_codec(extradata: bytes) -> str:
    """``avc1.PPCCLL`` from an avcC record or an Annex B stream holding an SPS."""
    # ISO/IEC 14496-15 §5.3.3.1: configurationVersion = 1, then profile, compat, level.
    if len(extradata) >= 4 and extradata[0] == 1:
        return _avc_triplet(extradata[1], extradata[2], extradata[3])
    # Annex B: find a start code followed by a NAL unit of type 7 (SPS); the three bytes
    # after its one-byte header are profile_idc, constraint flags and level_idc.
    i = extradata.find(b"\x00\x00\x01")
    while i >= 0:
        header = i + 3
        if header + 3 < len(extradata) and extradata[header] & 0x1F == 7:
            p = extradata[header + 1 : header + 4]
            return _avc_triplet(p[0], p[1], p[2])
        i = extradata.find(b"\x00\x00\x01", header)
    raise CodecError("no H.264 sequence parameter set found in the decoder configuration")


def avc_codec_from_profile(profile: str, level: int) -> str:
    """``avc1.PPCCLL`` from ffprobe's profile name and level when no bytes are available."""
    if profile not in AVC_PROFILES or not 0 < level < 256:
        raise CodecError(f"unknown H.264 profile {profile!r} or level {level}")
    idc, constraints = AVC_PROFILES[profile]
    return _avc_triplet(idc, constraints, level)


def aac_codec_from_config(config: bytes) -> str:
    """``mp4a.40.N`` from an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1): N is the
    5-bit audioObjectType, with 31 escaping to 32 + the next 6 bits."""
    if not config:
        raise CodecError("no AAC AudioSpecificConfig")
    aot = config[0] >> 3
    if aot == 31:
        if len(config) < 2:
            raise CodecError("truncated AAC AudioSpecificConfig")
        aot = 32 + (((config[0] & 0x07) << 3) | (config[1] >> 5))
    if aot == 0:
        raise CodecError("AAC AudioSpecificConfig has object type 0")
    return f"mp4a.40.{aot}"


def aac_codec(profile: str) -> str:
    """``mp4a.40.N`` (RFC 6381 §3.3, object type N) from ffprobe's AAC profile name."""
    try:
        return f"mp4a.40.{AAC_OBJECT_TYPES[profile]}"
    except KeyError:
        raise CodecError(f"unknown AAC profile {profile!r}") from None
