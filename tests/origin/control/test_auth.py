"""Tokens and roles, pure."""

from __future__ import annotations

import pytest

from origin.control.auth import (
    Principal,
    authorize,
    bearer,
    hash_token,
    new_token,
    parse_bootstrap,
)
from vcdn.errors import ConfigError, Forbidden, Unauthorized


def test_new_tokens_are_long_random_and_stored_only_as_sha256() -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith("vcdn_") and len(a) >= 45
    assert len(hash_token(a)) == 64 and a not in hash_token(a)


def test_bootstrap_tokens_parse_roles_and_bindings() -> None:
    table = parse_bootstrap(" operator:aaaaaaaaaaaaaaaa , appliance@a1:bbbbbbbbbbbbbbbb,")
    assert table == {
        hash_token("aaaaaaaaaaaaaaaa"): Principal("operator"),
        hash_token("bbbbbbbbbbbbbbbb"): Principal("appliance", "a1"),
    }
    assert parse_bootstrap("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("operator", "role:token"),
        ("operator:", "role:token"),
        ("operator:short", "shorter than 16"),
        ("root:aaaaaaaaaaaaaaaa", "Unknown role 'root'"),
    ],
)
def test_malformed_bootstrap_tokens_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_bootstrap(text)


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER abc", "abc")],
)
def test_bearer_scheme_is_case_insensitive(header: str, token: str) -> None:
    assert bearer(header) == token


@pytest.mark.parametrize(
    "header", [None, "", "Basic abc", "Bearer", "Bearer ", "Bearer " + "x" * 300]
)
def test_missing_or_malformed_authorization_is_401(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        bearer(header)


def test_authorize_checks_role_then_binding() -> None:
    allowed = frozenset({"appliance", "operator"})
    with pytest.raises(Unauthorized):
        authorize(None, allowed)
    with pytest.raises(Forbidden, match="steering role"):
        authorize(Principal("steering"), allowed)
    with pytest.raises(Forbidden, match="belongs to appliance 'a1'"):
        authorize(Principal("appliance", "a1"), allowed, appliance="a2")
    assert authorize(Principal("appliance", "a1"), allowed, appliance="a1").subject == "a1"
    # An appliance token bound to nothing is refused whatever it asks for.
    with pytest.raises(Forbidden, match="bound to no appliance"):
        authorize(Principal("appliance"), allowed, appliance="a2")
    with pytest.raises(Forbidden, match="bound to no appliance"):
        authorize(Principal("appliance"), allowed)
    assert authorize(Principal("operator"), allowed, appliance="a2").role == "operator"
