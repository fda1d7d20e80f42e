"""Schema for caching token decisions safely: a counter every revocation advances.

A control server caches who a token belongs to, so that a heartbeat costs no token query.
What makes that safe is `token_epoch`, one row that triggers advance whenever a token row
is deleted or changed, whoever does it (this server, another replica, the CLI, plain SQL).
A server reads the counter at most once a second and drops its whole cache when it
moved: a revocation still takes effect within a second, for one query per second per
server instead of one per request. Adding a token changes nothing cached (unknown tokens
are never cached), so inserts do not advance it.
"""

from __future__ import annotations

from typing import Final

from origin.control.migrations_base import Migration

_SQLITE: Final = """
CREATE TABLE token_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
);
INSERT INTO token_epoch VALUES (1, 0);
CREATE TRIGGER tokens_deleted AFTER DELETE ON tokens
BEGIN
    UPDATE token_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
CREATE TRIGGER tokens_updated AFTER UPDATE ON tokens
BEGIN
    UPDATE token_epoch SET epoch = epoch + 1 WHERE id = 1;
END;
"""

# One statement-level trigger (a revoke_subject deleting many rows advances it once).
# The function keeps the schema it was made in, so that a session with another
# search_path that deletes a token still advances this schema's counter.
_POSTGRES: Final = """
CREATE TABLE token_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL
);
INSERT INTO token_epoch VALUES (1, 0);
CREATE FUNCTION vcdn_token_epoch_advance() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE token_epoch SET epoch = epoch + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER tokens_changed AFTER DELETE OR UPDATE OR TRUNCATE ON tokens
FOR EACH STATEMENT EXECUTE FUNCTION vcdn_token_epoch_advance();
"""

TOKEN_EPOCH: Final = Migration(
    31,
    "token_epoch, advanced by every token revocation (servers cache token decisions)",
    _SQLITE,
    _POSTGRES,
)
