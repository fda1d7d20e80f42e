"""Schema for encrypted titles: their content keys, in the control database only.

A content key never lives beside the content (the origin, appliances and peers hold only
ciphertext); the control plane's key service hands it to a player that shows a valid
playback token for the title. One row per (title, key id): a title packaged again with
``--force`` gets a new key id, and the old row stays until an operator removes it, so a
player still holding the old playlists keeps working while appliances refill.
"""

from __future__ import annotations

from typing import Final

from origin.control.migrations_base import Migration

_TITLE_KEYS: Final = """
CREATE TABLE title_keys (
    title TEXT NOT NULL,
    kid TEXT NOT NULL,
    scheme TEXT NOT NULL,
    key TEXT NOT NULL,
    created_at {real} NOT NULL,
    PRIMARY KEY (title, kid)
);
"""

TITLE_KEYS: Final = Migration(
    30,
    "content keys of encrypted titles (the key service)",
    _TITLE_KEYS.format(real="REAL"),
    _TITLE_KEYS.format(real="DOUBLE PRECISION"),
)
