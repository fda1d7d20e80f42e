"""Small builders for planning tests: titles with ladder-shaped files, appliances."""

from __future__ import annotations

from vcdn.schemas import ApplianceView, FileEntry, Rendition, TitleManifest

LADDER = (("1080p", 5_000_000), ("720p", 3_000_000), ("480p", 1_200_000))


def title(name: str, minutes: float = 10.0, release_at: str | None = None) -> TitleManifest:
    """A title whose files are one per rendition, sized bitrate × duration."""
    seconds = minutes * 60
    files = [
        FileEntry(path=f"{r}/media.mp4", size=int(bw * seconds / 8), sha256="0" * 64)
        for r, bw in LADDER
    ]
    renditions = [
        Rendition(r, 1, 1, bw, bw, "avc1", 25.0, f"{r}/index.m3u8") for r, bw in LADDER
    ]
    return TitleManifest(
        title=name, duration=seconds, segment_seconds=4.0, format="fmp4", single_file=True,
        renditions=renditions, files=files, release_at=release_at,
    )


def appliance(
    ident: str, capacity: int, site: str = "s1", state: str = "healthy"
) -> ApplianceView:
    return ApplianceView(
        id=ident, site=site, public_url=f"http://{ident}.test", capacity_bytes=capacity,
        asn=0, lat=0.0, lon=0.0, prefixes=[], state=state,  # type: ignore[arg-type]
    )
