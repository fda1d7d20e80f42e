"""Encrypting a packaged title, pure but for the file rewrites: keys, AES-128 segments.

``--encrypt aes-128`` is HLS full-segment encryption (RFC 8216 §4.3.2.4, §5.2): each media
segment is AES-128-CBC with PKCS7 padding under the title's key, with an IV of its own
(random, stated in the playlist, so no two segments share one). The init segment stays
clear: it holds no media samples, and each ``EXT-X-KEY`` follows the ``EXT-X-MAP``, so it
applies only to the segments after it.

The key URI is relative, ``../keys/{kid}`` from ``{rendition}/index.m3u8``: a player that
fetched the playlist from ``/s/{token}/{title}/...`` asks the appliance for
``/s/{token}/{title}/keys/{kid}``, and the appliance redirects it, token and all, to the
control plane's key service (``/k/{token}/{title}/{kid}``). The key itself is never
written to disk: it goes from memory to the control database.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from packager.cenc import encrypt_files
from vcdn.hlsplaylist import parse_media

Scheme = Literal["aes-128", "cenc"]
SCHEMES: Final[tuple[Scheme, ...]] = ("aes-128", "cenc")
KEYS_DIR: Final = "keys"  # the key URIs' directory under a title (never a file on disk)


@dataclass(frozen=True, slots=True)
class TitleKey:
    """One content key: ids and key as 16 bytes each; `repr` leaves the key out."""

    scheme: Scheme
    kid: bytes
    key: bytes = field(repr=False)

    @staticmethod
    def new(scheme: Scheme) -> TitleKey:
        return TitleKey(scheme, secrets.token_bytes(16), secrets.token_bytes(16))


def key_uri(kid: bytes) -> str:
    """The key URI written in a rendition's playlist, relative to it."""
    return f"../{KEYS_DIR}/{kid.hex()}"


def cbc_encrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    """AES-128-CBC with PKCS7 padding (RFC 8216 §4.3.2.4)."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


def cbc_decrypt(data: bytes, key: bytes, iv: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = dec.update(data) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def key_tag(uri: str, iv: bytes) -> str:
    return f'#EXT-X-KEY:METHOD=AES-128,URI="{uri}",IV=0x{iv.hex()}'


def keyed_playlist(text: str, uri: str, ivs: list[bytes]) -> str:
    """`text` with an ``EXT-X-KEY`` (its own IV) before each segment's ``EXTINF``."""
    out, n = [], 0
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            if n < len(ivs):
                out.append(key_tag(uri, ivs[n]))
            n += 1
        out.append(line)
    if n != len(ivs):
        raise ValueError(f"the playlist has {n} segments, not {len(ivs)}")
    return "\n".join(out) + "\n"


def encrypt_rendition(title_dir: Path, playlist: str, key: TitleKey) -> None:
    """Encrypt one rendition's segment files in place and key its playlist.

    Each file is written to a temporary name and renamed over the clear one, so a crash
    leaves whole files (and the staging directory is discarded on any failure anyway)."""
    path = title_dir / playlist
    text = path.read_text()
    media = parse_media(text)
    if any(s.length is not None for s in media.segments):
        raise ValueError("AES-128 needs one file per segment, not byte ranges")
    ivs = []
    for seg in media.segments:
        iv = secrets.token_bytes(16)
        seg_path = path.parent / seg.uri
        tmp = seg_path.with_name(seg_path.name + ".enc")
        tmp.write_bytes(cbc_encrypt(seg_path.read_bytes(), key.key, iv))
        tmp.replace(seg_path)
        ivs.append(iv)
    path.write_text(keyed_playlist(text, key_uri(key.kid), ivs))


def sample_aes_ctr_tag(uri: str) -> str:
    """The HLS key tag of a CENC (``cenc``) rendition (rfc8216bis SAMPLE-AES-CTR)."""
    return f'#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI="{uri}",KEYFORMAT="identity"'


def cenc_rendition(title_dir: Path, playlist: str, key: TitleKey) -> None:
    """Encrypt one rendition's init and segments (CENC) in place; its playlist gets one
    SAMPLE-AES-CTR key tag after the map (the init is not encrypted, only marked)."""
    path = title_dir / playlist
    text = path.read_text()
    media = parse_media(text)
    if media.init is None or any(s.length is not None for s in media.segments):
        raise ValueError("CENC needs fMP4 segment files with an init segment")
    encrypt_files(path.parent / media.init.uri, [path.parent / s.uri for s in media.segments],
                  key.key, key.kid, secrets.randbits(63))
    out = []
    for line in text.splitlines():
        out.append(line)
        if line.startswith("#EXT-X-MAP:"):
            out.append(sample_aes_ctr_tag(key_uri(key.kid)))
    path.write_text("\n".join(out) + "\n")
