"""Independent checks of an MPD: the ISO DASH schema (lxml) and a PyPI DASH parser."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree

SCHEMA_DIR = Path(__file__).parent / "data" / "dash"
XLINK_URL = "http://www.w3.org/XML/2008/06/xlink.xsd"


class _Local(etree.Resolver):
    """Serve the xlink import from the shipped copy: no network at test time."""

    def resolve(self, url, pubid, context):  # type: ignore[no-untyped-def]
        if url == XLINK_URL:
            return self.resolve_filename(str(SCHEMA_DIR / "xlink.xsd"), context)
        return None


@cache
def schema() -> etree.XMLSchema:
    parser = etree.XMLParser(load_dtd=True, no_network=True, resolve_entities=True)
    parser.resolvers.add(_Local())
    doc = etree.parse(str(SCHEMA_DIR / "DASH-MPD.xsd"), parser)
    return etree.XMLSchema(doc)


def schema_errors(text: str) -> list[str]:
    """Every violation of the DASH MPD schema, empty when the MPD is valid."""
    s = schema()
    doc = etree.fromstring(text.encode(), etree.XMLParser(no_network=True,
                                                          resolve_entities=False))
    if s.validate(doc):
        return []
    return [f"line {e.line}: {e.message}" for e in s.error_log]


def mpd_files(path: Path) -> set[str]:
    """Every file the MPD at `path` refers to, from mpegdash's parse (not our writer's
    structures): ``$Number$`` and ``$Number%05d$`` templates, or a BaseURL."""
    import re

    from mpegdash.parser import MPEGDASHParser

    doc = MPEGDASHParser.parse(str(path))
    urls: set[str] = set()
    for aset in doc.periods[0].adaptation_sets:
        for rep in aset.representations:
            if not rep.segment_templates:
                urls.add(rep.base_urls[0].base_url_value)
                continue
            t = rep.segment_templates[0]
            urls.add(t.initialization)
            count = sum((s.r or 0) + 1 for s in t.segment_timelines[0].Ss)
            for n in range(t.start_number, t.start_number + count):
                urls.add(re.sub(r"\$Number(?:%0(\d)d)?\$",
                                lambda m, n=n: f"{n:0{m.group(1) or 1}d}", t.media))
    return urls
