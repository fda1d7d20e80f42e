"""`vcdn package --encrypt aes-128`: real encodes, encrypted segment by segment, keyed
playlists, the key handed to the key service and written nowhere on disk."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from packager.encrypt import (
    TitleKey,
    cbc_decrypt,
    cbc_encrypt,
    key_uri,
    keyed_playlist,
)
from packager.graph import EncodeOptions
from packager.package import Request, package
from tests.packager.conftest import LADDER, SEGMENT_S, quiet
from vcdn.errors import VcdnError
from vcdn.hlsplaylist import parse_media

KEY_RE = re.compile(r'#EXT-X-KEY:METHOD=AES-128,URI="([^"]+)",IV=0x([0-9a-f]{32})')


def test_cbc_round_trip_pads_every_length() -> None:
    key, iv = bytes(range(16)), bytes(16)
    for n in (0, 1, 15, 16, 17, 1000):
        data = bytes(n)
        enc = cbc_encrypt(data, key, iv)
        assert len(enc) % 16 == 0 and len(enc) > n
        assert cbc_decrypt(enc, key, iv) == data


def test_each_segment_gets_its_own_key_tag_after_the_map() -> None:
    text = ('#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="init.mp4"\n'
            "#EXTINF:2.0,\nseg_00001.m4s\n#EXTINF:1.0,\nseg_00002.m4s\n#EXT-X-ENDLIST\n")
    ivs = [b"\x01" * 16, b"\x02" * 16]
    out = keyed_playlist(text, "../keys/ab", ivs)
    lines = out.splitlines()
    assert lines.index('#EXT-X-MAP:URI="init.mp4"') < lines.index(
        '#EXT-X-KEY:METHOD=AES-128,URI="../keys/ab",IV=0x' + "01" * 16)
    assert [m.group(2) for m in KEY_RE.finditer(out)] == ["01" * 16, "02" * 16]
    assert parse_media(out).segments == parse_media(text).segments
    with pytest.raises(ValueError):
        keyed_playlist(text, "../keys/ab", ivs[:1])


def test_a_title_key_never_shows_its_key_in_repr() -> None:
    key = TitleKey.new("aes-128")
    assert "key=" not in repr(key) and repr(key.key) not in repr(key)
    assert key_uri(key.kid) == f"../keys/{key.kid.hex()}"


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory, sources: dict[str, Path]):
    root = tmp_path_factory.mktemp("origin-enc")
    stored: list[tuple[str, TitleKey]] = []
    result = package(
        Request(
            source=sources["av"], title="enc-aes", origin_root=root, heights=LADDER,
            options=EncodeOptions(segment_seconds=SEGMENT_S, encrypt="aes-128"),
            key_sink=lambda title, key: stored.append((title, key)),
        ),
        quiet,
    )
    return result, root, stored


@pytest.mark.slow
def test_every_segment_is_encrypted_and_decrypts_to_a_playable_stream(encrypted) -> None:
    result, _, stored = encrypted
    [(title, key)] = stored
    assert title == "enc-aes" and key.scheme == "aes-128"
    for rendition in ("240p", "144p", "audio"):
        d = result.path / rendition
        text = (d / "index.m3u8").read_text()
        tags = KEY_RE.findall(text)
        media = parse_media(text)
        assert len(tags) == len(media.segments) >= 3
        assert {uri for uri, _ in tags} == {f"../keys/{key.kid.hex()}"}
        assert len({iv for _, iv in tags}) == len(tags)  # no IV used twice
        clear = (d / "init.mp4").read_bytes()
        for (_, iv), seg in zip(tags, media.segments, strict=True):
            data = (d / seg.uri).read_bytes()
            assert data[4:8] not in (b"styp", b"moof")  # not a clear fragment
            clear += cbc_decrypt(data, key.key, bytes.fromhex(iv))
        joined = d / "joined.mp4"
        joined.write_bytes(clear)
        try:
            out = subprocess.run(
                ["ffmpeg", "-v", "error", "-i", str(joined), "-f", "null", "-"],
                capture_output=True, text=True, timeout=60,
            )
        finally:
            joined.unlink()
        assert out.returncode == 0 and not out.stderr.strip(), out.stderr


@pytest.mark.slow
def test_the_key_is_nowhere_on_disk_and_there_is_no_mpd(encrypted) -> None:
    result, root, stored = encrypted
    key = stored[0][1]
    assert not (result.path / "manifest.mpd").exists()  # AES-128 segments are HLS only
    names = {f.path for f in result.manifest.files}
    assert not any("key" in n for n in names), names
    forms = (key.key, key.key.hex().encode(), key.key.hex().upper().encode())
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(f in data for f in forms), path


@pytest.mark.slow
def test_encryption_needs_a_key_sink_and_fmp4_segment_files(
    tmp_path: Path, sources: dict[str, Path]
) -> None:
    def request(**opts) -> Request:
        return Request(source=sources["av"], title="x", origin_root=tmp_path,
                       options=EncodeOptions(**opts), key_sink=lambda t, k: None)

    with pytest.raises(VcdnError, match="needs --control"):
        package(Request(source=sources["av"], title="x", origin_root=tmp_path,
                        options=EncodeOptions(encrypt="aes-128")), quiet)
    with pytest.raises(VcdnError, match="fMP4 segment files"):
        package(request(encrypt="aes-128", single_file=True), quiet)
    with pytest.raises(VcdnError, match="fMP4 segment files"):
        package(request(encrypt="cenc", format="ts"), quiet)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_a_key_the_key_service_refuses_publishes_nothing(
    tmp_path: Path, sources: dict[str, Path]
) -> None:
    def refuse(title: str, key: TitleKey) -> None:
        raise VcdnError("Control API PUT /titles/x/keys/...: 503")

    with pytest.raises(VcdnError, match="503"):
        package(Request(source=sources["silent"], title="x", origin_root=tmp_path,
                        heights=(144,), options=EncodeOptions(encrypt="aes-128"),
                        key_sink=refuse), quiet)
    assert not (tmp_path / "x").exists()
    assert [p.name for p in (tmp_path / ".vcdn-staging").iterdir()] == []


# --- CENC ('cenc', AES-CTR): the packager's own box writer, checked by ffmpeg's reader ---


@pytest.fixture(scope="module")
def cenc_title(tmp_path_factory: pytest.TempPathFactory, sources: dict[str, Path]):
    root = tmp_path_factory.mktemp("origin-cenc")
    stored: list[tuple[str, TitleKey]] = []
    result = package(
        Request(
            source=sources["av"], title="enc-cenc", origin_root=root, heights=LADDER,
            options=EncodeOptions(segment_seconds=SEGMENT_S, encrypt="cenc"),
            key_sink=lambda title, key: stored.append((title, key)),
        ),
        quiet,
    )
    return result, root, stored[0][1]


def decode(path: Path, key: TitleKey | None) -> subprocess.CompletedProcess[str]:
    args = ["ffmpeg", "-nostdin", "-v", "error"]
    if key is not None:
        args += ["-decryption_key", key.key.hex()]
    return subprocess.run([*args, "-i", str(path), "-f", "null", "-"],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_cenc_segments_decrypt_with_the_key_and_not_without(cenc_title, tmp_path) -> None:
    result, _, key = cenc_title
    for rendition in ("240p", "144p", "audio"):
        d = result.path / rendition
        init = (d / "init.mp4").read_bytes()
        assert b"sinf" in init and b"tenc" in init and key.kid in init
        assert b"encv" in init if rendition != "audio" else b"enca" in init
        media = parse_media((d / "index.m3u8").read_text())
        for seg in media.segments:
            data = (d / seg.uri).read_bytes()
            assert b"senc" in data and b"saiz" in data and b"saio" in data
            joined = tmp_path / f"{rendition}-{seg.uri}.mp4"
            joined.write_bytes(init + data)
            good = decode(joined, key)
            assert good.returncode == 0 and not good.stderr.strip(), (seg.uri, good.stderr)
            if rendition != "audio":  # garbage AAC may still "decode"; H.264 never does
                assert decode(joined, None).stderr.strip(), seg.uri
            assert decode(joined, TitleKey.new("cenc")).stderr.strip(), seg.uri


@pytest.mark.slow
def test_cenc_manifests_name_the_key_and_stay_schema_valid(cenc_title) -> None:
    from tests.packager.dashcheck import schema_errors

    result, root, key = cenc_title
    mpd = (result.path / "manifest.mpd").read_text()
    assert schema_errors(mpd) == []
    kid = key.kid.hex()
    uuid = f"{kid[:8]}-{kid[8:12]}-{kid[12:16]}-{kid[16:20]}-{kid[20:]}"
    assert mpd.count(f'cenc:default_KID="{uuid}"') == 2  # video and audio sets
    assert mpd.count("urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e") == 2
    playlist = (result.path / "240p" / "index.m3u8").read_text()
    assert f'#EXT-X-KEY:METHOD=SAMPLE-AES-CTR,URI="../keys/{kid}",KEYFORMAT="identity"' in (
        playlist)
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert key.key not in data and key.key.hex().encode() not in data, path


def test_subsamples_keep_nal_headers_clear_and_protect_whole_blocks() -> None:
    from packager.cenc import subsamples

    sps = (4).to_bytes(4, "big") + b"\x67abc"  # non-VCL: wholly clear
    idr = (100).to_bytes(4, "big") + b"\x65" + bytes(99)  # VCL: header clear, 96 protected
    assert subsamples(sps + idr, 4) == [(8 + 8, 96)]
    assert subsamples(sps, 4) == [(8, 0)]
    small = (10).to_bytes(4, "big") + b"\x41" + bytes(9)  # under a block: all clear
    assert subsamples(small, 4) == [(14, 0)]


def test_a_malformed_fragment_is_a_clear_error_not_a_crash() -> None:
    from packager.cenc import (
        CencError,
        IvCounter,
        TrackInfo,
        encrypt_init,
        encrypt_segment,
        subsamples,
    )

    with pytest.raises(CencError):
        subsamples((1000).to_bytes(4, "big") + b"\x65", 4)  # runs past the sample
    with pytest.raises(CencError):
        encrypt_segment(b"\x00\x00\x00\x10moof" + bytes(4), bytes(16), TrackInfo(False),
                        IvCounter(0))
    with pytest.raises(CencError):
        encrypt_init(b"\x00\x00\x00\x08free", bytes(16))
