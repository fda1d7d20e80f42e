"""Common Encryption (ISO/IEC 23001-7, scheme ``cenc``: AES-128-CTR) of the packager's
fragmented MP4, in place: the same files, encrypted, so HLS and DASH still share them.

ffmpeg's own ``-encryption_scheme cenc-aes-ctr`` writes the sample auxiliary information
(``senc``/``saiz``/``saio``) only for a non-fragmented file (ffmpeg 5.1's mov muxer leaves
every fragment without it, so no decoder can decrypt the samples), and Shaka Packager is
not installable here; so the boxes are written here, from the standard:

* init segment: the sample entry becomes ``encv``/``enca`` with a ``sinf`` (``frma`` with
  the original format, ``schm`` = ``cenc`` 1.0, ``tenc`` with the default KID and 8-byte
  IVs), and ``moov`` gains a W3C common-format ``pssh`` naming the KID, which is the init
  data a browser's ClearKey CDM receives;
* media segments: each sample is encrypted with AES-CTR under its own 8-byte IV; video
  uses subsample encryption (each NAL unit's length and header stay clear, non-VCL NAL
  units wholly clear, the protected part of a slice a multiple of 16 bytes), audio is
  encrypted whole. Each ``traf`` gains ``senc``, ``saiz`` and ``saio``; ``trun``'s data
  offset and the ``sidx`` reference sizes grow by the bytes added to ``moof``.

Box handling is pure (bytes in, bytes out); only `encrypt_file` touches the disk.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

#: W3C "Common PSSH box format" system id (EME initialization data, ``cenc`` type).
COMMON_SYSTEM_ID: Final = bytes.fromhex("1077efecc0b24d02ace33c1e52e2fb4b")
IV_SIZE: Final = 8
#: Leading bytes of a sample entry's payload before its child boxes (ISO 14496-12 §8.5.2,
#: §12.1.3 VisualSampleEntry, §12.2.3 AudioSampleEntry v0), and of ``stsd``.
_PREFIX: Final = {b"avc1": 78, b"encv": 78, b"mp4a": 28, b"enca": 28, b"stsd": 8}
_CONTAINERS: Final = frozenset(
    {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf", b"stsd", *_PREFIX}
)
_VCL: Final = frozenset(range(1, 6))  # H.264 coded slice NAL unit types


class CencError(ValueError):
    """The file is not the fragmented MP4 the packager writes."""


@dataclass
class Box:
    kind: bytes
    body: bytes = b""  # a leaf's payload, or a container's leading fields
    children: list[Box] | None = None

    def find(self, kind: bytes) -> Box:
        for child in self.children or ():
            if child.kind == kind:
                return child
        raise CencError(f"no {kind.decode()} box in {self.kind.decode()}")

    def to_bytes(self) -> bytes:
        payload = self.body + b"".join(c.to_bytes() for c in self.children or ())
        return struct.pack(">I4s", 8 + len(payload), self.kind) + payload


def parse(data: bytes, start: int = 0, end: int | None = None) -> list[Box]:
    """The boxes of data[start:end], containers opened (32-bit sizes only)."""
    end = len(data) if end is None else end
    out, pos = [], start
    while pos < end:
        if end - pos < 8:
            raise CencError(f"truncated box at byte {pos}")
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size < 8 or pos + size > end:
            raise CencError(f"box {kind!r} at byte {pos} has a bad size {size}")
        if kind in _CONTAINERS:
            skip = _PREFIX.get(kind, 0)
            out.append(Box(kind, data[pos + 8:pos + 8 + skip],
                           parse(data, pos + 8 + skip, pos + size)))
        else:
            out.append(Box(kind, data[pos + 8:pos + size]))
        pos += size
    return out


def _full(version: int, flags: int) -> bytes:
    return struct.pack(">I", (version << 24) | flags)


def sinf(original: bytes, kid: bytes) -> Box:
    tenc = Box(b"tenc", _full(0, 0) + bytes([0, 0, 1, IV_SIZE]) + kid)
    return Box(b"sinf", children=[
        Box(b"frma", original),
        Box(b"schm", _full(0, 0) + b"cenc" + struct.pack(">I", 0x00010000)),
        Box(b"schi", children=[tenc]),
    ])


def pssh(kid: bytes) -> Box:
    """The W3C common-format ``pssh`` (version 1: the KIDs, no data)."""
    return Box(b"pssh", _full(1, 0) + COMMON_SYSTEM_ID + struct.pack(">I", 1) + kid
               + struct.pack(">I", 0))


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """What the segments' encryption needs from the init segment."""

    video: bool
    nal_length_size: int = 4


def encrypt_init(data: bytes, kid: bytes) -> tuple[bytes, TrackInfo]:
    """The protected init segment and what its track is."""
    top = parse(data)
    moov = next((b for b in top if b.kind == b"moov"), None)
    if moov is None:
        raise CencError("the init segment has no moov")
    stsd = moov.find(b"trak").find(b"mdia").find(b"minf").find(b"stbl").find(b"stsd")
    if not stsd.children or len(stsd.children) != 1:
        raise CencError("expected exactly one sample entry")
    entry = stsd.children[0]
    if entry.kind == b"avc1":
        avcc = entry.find(b"avcC")
        info = TrackInfo(True, (avcc.body[4] & 0x3) + 1)
        entry.kind = b"encv"
        original = b"avc1"
    elif entry.kind == b"mp4a":
        info = TrackInfo(False)
        entry.kind = b"enca"
        original = b"mp4a"
    else:
        raise CencError(f"cannot encrypt a {entry.kind!r} track (H.264 and AAC only)")
    assert entry.children is not None
    entry.children.append(sinf(original, kid))
    assert moov.children is not None
    moov.children.append(pssh(kid))
    return b"".join(b.to_bytes() for b in top), info


def subsamples(sample: bytes, nal_length_size: int) -> list[tuple[int, int]]:
    """(clear, protected) byte counts covering one H.264 sample."""
    out: list[tuple[int, int]] = []
    pos, clear = 0, 0
    while pos < len(sample):
        if pos + nal_length_size > len(sample):
            raise CencError("a NAL unit length runs past the sample")
        n = int.from_bytes(sample[pos:pos + nal_length_size], "big")
        total = nal_length_size + n
        if n == 0 or pos + total > len(sample):
            raise CencError("a NAL unit runs past the sample")
        kind = sample[pos + nal_length_size] & 0x1F
        protected = (n - 1) // 16 * 16 if kind in _VCL else 0
        clear += total - protected
        if protected:
            while clear > 0xFFFF:
                out.append((0xFFFF, 0))
                clear -= 0xFFFF
            out.append((clear, protected))
            clear = 0
        pos += total
    if clear:
        while clear > 0xFFFF:
            out.append((0xFFFF, 0))
            clear -= 0xFFFF
        out.append((clear, 0))
    return out


def ctr(key: bytes, iv: bytes, parts: list[bytes]) -> list[bytes]:
    """AES-128-CTR over the protected parts of one sample, one keystream (IV || 0^64)."""
    enc = Cipher(algorithms.AES(key), modes.CTR(iv + bytes(8))).encryptor()
    return [enc.update(p) for p in parts]


@dataclass
class IvCounter:
    """Per-sample IVs: a random start, then +1 per sample, so none repeats in a track."""

    next: int

    def take(self) -> bytes:
        iv = (self.next % 2**64).to_bytes(IV_SIZE, "big")
        self.next += 1
        return iv


def _trun_samples(tfhd: Box, trun: Box) -> tuple[int, list[int]]:
    """(data offset, sample sizes) of a track run."""
    tf_flags = struct.unpack_from(">I", tfhd.body)[0] & 0xFFFFFF
    if tf_flags & 0x01:
        raise CencError("tfhd with an explicit base data offset is not supported")
    pos = 8 + (4 if tf_flags & 0x02 else 0) + (4 if tf_flags & 0x08 else 0)
    default_size = struct.unpack_from(">I", tfhd.body, pos)[0] if tf_flags & 0x10 else None
    flags = struct.unpack_from(">I", trun.body)[0] & 0xFFFFFF
    count = struct.unpack_from(">I", trun.body, 4)[0]
    if not flags & 0x01:
        raise CencError("trun without a data offset is not supported")
    offset = struct.unpack_from(">i", trun.body, 8)[0]
    pos = 12 + (4 if flags & 0x04 else 0)
    per = 4 * bin(flags & 0xF00).count("1")
    sizes = []
    for i in range(count):
        at = pos + i * per + (4 if flags & 0x100 else 0)
        if flags & 0x200:
            sizes.append(struct.unpack_from(">I", trun.body, at)[0])
        elif default_size is not None:
            sizes.append(default_size)
        else:
            raise CencError("no sample sizes in trun or tfhd")
    return offset, sizes


def encrypt_segment(data: bytes, key: bytes, info: TrackInfo, ivs: IvCounter) -> bytes:
    """A media segment with every sample encrypted and its aux info added."""
    top = parse(data)
    out = bytearray(data)
    offsets, grown, sizes_before = [], [], []
    pos = 0
    for box in top:
        size = len(box.to_bytes())
        sizes_before.append(size)
        if box.kind == b"moof":
            offsets.append(pos)
        pos += size
    for moof_at, moof in zip(offsets, [b for b in top if b.kind == b"moof"], strict=True):
        traf = moof.find(b"traf")
        tfhd, trun = traf.find(b"tfhd"), traf.find(b"trun")
        data_offset, sizes = _trun_samples(tfhd, trun)
        start = moof_at + data_offset
        entries, aux = [], []
        for size in sizes:
            sample = bytes(out[start:start + size])
            iv = ivs.take()
            if info.video:
                subs = subsamples(sample, info.nal_length_size)
                parts, p = [], 0
                for clear, protected in subs:
                    parts.append((p + clear, protected))
                    p += clear + protected
                enc = ctr(key, iv, [sample[a:a + n] for a, n in parts])
                for (a, n), e in zip(parts, enc, strict=True):
                    out[start + a:start + a + n] = e
                entry = iv + struct.pack(">H", len(subs)) + b"".join(
                    struct.pack(">HI", c, n) for c, n in subs)
            else:
                out[start:start + size] = ctr(key, iv, [sample])[0]
                entry = iv
            entries.append(entry)
            aux.append(len(entry))
            start += size
        senc = Box(b"senc", _full(0, 0x2 if info.video else 0)
                   + struct.pack(">I", len(entries)) + b"".join(entries))
        same = len(set(aux)) == 1
        saiz = Box(b"saiz", _full(0, 0) + bytes([aux[0] if same else 0])
                   + struct.pack(">I", len(aux)) + (b"" if same else bytes(aux)))
        assert traf.children is not None and moof.children is not None
        before_traf = 8 + sum(len(c.to_bytes()) for c in moof.children[:moof.children.index(traf)])
        senc_at = before_traf + 8 + sum(len(c.to_bytes()) for c in traf.children)
        saio = Box(b"saio", _full(0, 0) + struct.pack(">II", 1, senc_at + 16))
        traf.children += [senc, saiz, saio]
        added = len(senc.to_bytes()) + len(saiz.to_bytes()) + len(saio.to_bytes())
        trun.body = trun.body[:8] + struct.pack(">i", data_offset + added) + trun.body[12:]
        grown.append(added)
    # Rebuild: each moof re-serialised, its mdat and every other box as they are (now
    # holding the ciphertext), sidx references grown by what their moof gained.
    result, pos = [], 0
    for box, size in zip(top, sizes_before, strict=True):
        if box.kind == b"moof":
            result.append(box.to_bytes())
        elif box.kind == b"sidx":
            result.append(_grow_sidx(box, grown).to_bytes())
        else:
            result.append(bytes(out[pos:pos + size]))
        pos += size
    return b"".join(result)


def _grow_sidx(sidx: Box, grown: list[int]) -> Box:
    body = bytearray(sidx.body)
    version = body[0]
    at = 4 + 4 + 4 + (8 if version else 4) * 2 + 2
    count = struct.unpack_from(">H", body, at)[0]
    at += 2
    if count != len(grown):
        raise CencError(f"sidx has {count} references for {len(grown)} fragments")
    for extra in grown:
        ref = struct.unpack_from(">I", body, at)[0]
        kind, size = ref >> 31, ref & 0x7FFFFFFF
        struct.pack_into(">I", body, at, (kind << 31) | (size + extra))
        at += 12
    return Box(b"sidx", bytes(body))


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".enc")
    tmp.write_bytes(data)
    tmp.replace(path)


def encrypt_files(init: Path, segments: Iterator[Path] | list[Path], key: bytes, kid: bytes,
                  iv_start: int) -> None:
    """Encrypt one rendition (its init and media segments) in place."""
    protected, info = encrypt_init(init.read_bytes(), kid)
    ivs = IvCounter(iv_start)
    for seg in segments:
        _write(seg, encrypt_segment(seg.read_bytes(), key, info, ivs))
    _write(init, protected)
