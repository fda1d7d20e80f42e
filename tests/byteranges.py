"""multipart/byteranges bodies split by the standard library's MIME parser, so tests check
what vcdn sends with a parser that shares no code with vcdn (RFC 9110 §14.6, RFC 2046 §5.1)."""

from __future__ import annotations

import email.parser
import email.policy


def split(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """(lower-cased part headers, part bytes) per part; AssertionError if not multipart."""
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    assert msg.is_multipart(), f"not a multipart body: {content_type!r}"
    assert not msg.defects, f"malformed multipart body: {msg.defects}"
    out = []
    for part in msg.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out.append(({k.lower(): str(v) for k, v in part.items()}, payload))
    return out
