"""The peer protocol (vcdn.peering) and signing with the current key, pure."""

from __future__ import annotations

from vcdn import peering, tokens
from vcdn.tokens import KeyRing, SigningKey

OLD = SigningKey("old", b"o" * 32, not_after=1_000.0)
NEW = SigningKey("new", b"n" * 32, not_before=900.0)


def test_signs_with_the_first_key_in_service_and_never_past_its_not_after() -> None:
    ring = KeyRing([OLD, NEW])
    token = ring.sign_current("t1", 500.0, 300)
    assert token is not None and token.startswith("old.800.")
    assert tokens.verify(token, "t1", ring, 600.0).key_id == "old"
    # Near the end of the old key's window the token ends with it, not 300 s later.
    assert ring.sign_current("t1", 950.0, 300).startswith("old.1000.")
    assert ring.sign_current("t1", 1_001.0, 300).startswith("new.1301.")
    assert KeyRing([OLD]).sign_current("t1", 1_001.0, 300) is None


def test_a_peer_is_asked_the_signed_path_when_a_key_is_in_service() -> None:
    ring = KeyRing([OLD])
    target = peering.target(ring, "t1", "v 1/seg.ts", 10.0)
    token = target.split("/")[2]
    assert target == f"/s/{token}/t1/v%201/seg.ts"
    assert tokens.verify(token, "t1", ring, 10.0 + peering.TOKEN_TTL - 1)


def test_without_a_key_a_peer_is_asked_the_plain_path() -> None:
    assert peering.target(None, "t1", "a.ts", 0.0) == "/v/t1/a.ts"
    assert peering.target(KeyRing([OLD]), "t1", "a.ts", 2_000.0) == "/v/t1/a.ts"
    assert peering.token(KeyRing(), "t1", 0.0) is None


def test_one_canonical_encoding_for_every_target() -> None:
    assert peering.origin_target("t", "%/a b?#é.ts") == "/v/t/%25/a%20b%3F%23%C3%A9.ts"
    assert peering.peer_target("K", "t", "a:b@c.ts") == "/s/K/t/a:b@c.ts"
