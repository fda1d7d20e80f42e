"""The fast path's memory of appliance URLs (`edge.fastroutes`), pure: it answers as the
router does (`edge.routing.resolve`), and what it remembers of a token is no pass to
another title, past its expiry, or after a key reload."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.fastroutes import FastRoutes
from edge.keys import video_path
from edge.routing import resolve
from edge.store import object_key
from vcdn import tokens
from vcdn.errors import NotFound, VcdnError

SECRET = b"0123456789abcdef-one"
RING = tokens.KeyRing([tokens.SigningKey("k1", SECRET, not_after=2_000_000_000)])
NOW = 1_800_000_000.0


def tok(title: str = "demo", expires: int = int(NOW) + 60, key: bytes = SECRET) -> str:
    return tokens.sign(title, key_id="k1", key=key, expires=expires)


def test_a_new_token_for_a_known_path_is_checked_and_remembered() -> None:
    routes = FastRoutes("tokens")
    first, second = tok(expires=int(NOW) + 60), tok(expires=int(NOW) + 61)
    assert routes.route(f"/s/{first}/demo/v1/a.m4s", RING, NOW) == ("demo/v1/a.m4s", "demo",
                                                                       NOW + 60)
    assert routes.known(f"/s/{second}/demo/v1/a.m4s") is None  # not verified yet
    assert routes.route(f"/s/{second}/demo/v1/a.m4s", RING, NOW) == ("demo/v1/a.m4s", "demo",
                                                                        NOW + 61)
    # A known token on a new path: the path is placed, the token taken from memory.
    assert routes.known(f"/s/{second}/demo/v1/b.m4s") is None
    assert routes.route(f"/s/{second}/demo/v1/b.m4s", RING, NOW)
    assert routes.known(f"/s/{second}/demo/v1/b.m4s") == ("demo/v1/b.m4s", "demo", NOW + 61)


def test_a_remembered_token_is_no_pass_to_another_title() -> None:
    """The token signs one title: remembered for it, it is checked again (and refused)
    for any other, and the refusal does not replace what is remembered."""
    routes = FastRoutes("tokens")
    token = tok("demo")
    assert routes.route(f"/s/{token}/demo/v1/a.m4s", RING, NOW) is not None
    assert routes.route(f"/s/{token}/other/v1/a.m4s", RING, NOW) is None
    assert routes.known(f"/s/{token}/other/v1/a.m4s") is None
    assert routes.route(f"/s/{token}/demo/v1/b.m4s", RING, NOW) is not None


@pytest.mark.parametrize("case", ["tampered", "truncated", "wrong key", "empty", "malformed",
                                  "expired"])
def test_refused_tokens_are_refused_on_a_known_path_and_not_remembered(case: str) -> None:
    routes = FastRoutes("tokens")
    good = tok()
    assert routes.route(f"/s/{good}/demo/v1/a.m4s", RING, NOW) is not None
    bad = {
        "tampered": good[:-2] + ("AA" if not good.endswith("AA") else "BA"),
        "truncated": good[:-1],
        "wrong key": tok(key=b"0123456789abcdef-two"),
        "empty": "",
        "malformed": "k1..",
        "expired": tok(expires=int(NOW) - 1),
    }[case]
    for _ in range(2):
        assert routes.route(f"/s/{bad}/demo/v1/a.m4s", RING, NOW) is None, case
        assert routes.known(f"/s/{bad}/demo/v1/a.m4s") is None


def test_valid_until_is_the_token_or_its_key_expiry_and_reloads_forget() -> None:
    routes = FastRoutes("tokens")
    late = tok(expires=2_100_000_000)
    assert routes.route(f"/s/{late}/demo/a.m4s", RING, NOW) == ("demo/a.m4s", "demo",
                                                                  2_000_000_000.0)
    routes.forget_tokens()
    assert routes.known(f"/s/{late}/demo/a.m4s") is None
    other = tokens.KeyRing([tokens.SigningKey("k1", b"0123456789abcdef-new")])
    assert routes.route(f"/s/{late}/demo/a.m4s", other, NOW) is None


def test_unsigned_urls_only_without_tokens() -> None:
    assert FastRoutes("tokens").route("/v/demo/a.m4s", RING, NOW) is None
    assert FastRoutes("none").route("/v/demo/a.m4s", RING, NOW) == ("demo/a.m4s", "demo",
                                                                      math.inf)
    # A signed URL is checked whatever the auth setting says.
    assert FastRoutes("none").route("/s/k1.1.x/demo/a.m4s", RING, NOW) is None


def test_a_target_must_start_with_the_form() -> None:
    """Only a target that starts with ``/s/`` (or ``/v/``) is an appliance URL."""
    with pytest.raises(NotFound):
        resolve(f"x/s/{tok()}/demo/v1/a.m4s", RING, "tokens", NOW)
    with pytest.raises(NotFound):
        resolve("x/v/demo/v1/a.m4s", RING, "none", NOW)


def _expected(raw: str, auth: str) -> tuple[str, str, float] | None:
    """What the fast path did before it remembered halves: the router, the video path
    check and the LL-HLS key suffix, on the whole target."""
    from edge.llhls import fast_query

    target, suffix = fast_query(raw)
    if suffix is None:
        return None
    try:
        route = resolve(target, RING, auth, NOW)
        return object_key(route.title, video_path(route.rest)) + suffix, route.title, \
            route.valid_until
    except VcdnError:
        return None


PIECES = ["/s/", "/v/", "/", "demo", "Demo", "other", tok(), tok("other"), tok()[:-1], "k1",
          ".", "..", "%2e%2e", "%2F", "v1", "a.m4s", "index.m3u8", "?", "_HLS_msn=3",
          "&_HLS_part=1", "x=1", "%3F", "#", "s", "v", " "]


@given(st.lists(st.sampled_from(PIECES), max_size=9), st.sampled_from(["tokens", "none"]))
def test_the_memory_answers_as_the_router(pieces: list[str], auth: str) -> None:
    """Asked twice (the second from memory, with the token remembered under another
    path first), the answer is the router's, for any target made of URL-ish pieces."""
    raw = "".join(pieces)
    routes = FastRoutes(auth)
    for title in ("demo", "other"):
        assert routes.route(f"/s/{tok(title)}/{title}/elsewhere.m4s", RING, NOW) is not None
    want = _expected(raw, auth)
    assert routes.route(raw, RING, NOW) == want
    assert routes.route(raw, RING, NOW) == want
    assert routes.known(raw) == want
