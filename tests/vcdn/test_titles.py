"""Title id validation: what may appear in URLs and directory names."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vcdn.errors import ClientError
from vcdn.titles import is_valid_title, validate_title


@pytest.mark.parametrize("title", ["t1", "Big_Buck.Bunny-2008", "a" * 128, "0", "x.y"])
def test_valid_titles_are_returned_unchanged(title: str) -> None:
    assert validate_title(title) == title


@pytest.mark.parametrize(
    "title",
    ["", ".", "..", ".hidden", "-rf", "_x", "a/b", "a b", "a\x00", "é", "a" * 129, "t1\n"],
)
def test_invalid_titles_raise_a_client_error_naming_the_rule(title: str) -> None:
    with pytest.raises(ClientError, match="1-128 characters"):
        validate_title(title)


@given(st.text(max_size=200))
def test_a_valid_title_is_always_a_safe_single_path_segment(title: str) -> None:
    if is_valid_title(title):
        assert "/" not in title and "\\" not in title
        assert title not in (".", "..") and not title.startswith(".")
        assert title.isascii() and title.isprintable() and 1 <= len(title) <= 128
