"""Key URIs of encrypted titles, pure: the appliance sends players on to the key service.

An encrypted title's playlists name their key relatively (``../keys/{kid}``, see
`packager.encrypt`), so a player that holds ``/s/{token}/{title}/...`` asks the appliance
for ``/s/{token}/{title}/keys/{kid}`` with the token it already has. The appliance never
holds a key (it is operated by an ISP, outside the video service): after checking the
token as for any video URL it answers ``307`` to the control plane's key service,
``{key_service}/k/{token}/{title}/{kid}``, which checks the token again and answers the
key. 307 keeps the method, so the same door works for a ClearKey license POST.
"""

from __future__ import annotations

import re
from typing import Final

KEY_PATH: Final = re.compile(r"^keys/(?P<what>[0-9a-f]{32}|clearkey)$")


def key_location(key_service: str, token: str, title: str, rest: str) -> str | None:
    """The key service URL for the tail `rest` of a signed URL, or None if `rest` is not
    a key URI (then it is an ordinary file of the title)."""
    m = KEY_PATH.match(rest)
    if m is None or not key_service:
        return None
    return f"{key_service.rstrip('/')}/k/{token}/{title}/{m['what']}"
