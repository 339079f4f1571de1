"""The If-Match header as the PATCH route reads it (RFC 9110): `*`, or strong entity tags."""

from __future__ import annotations

import pytest

from hirestream.postings.api import etag, if_match_of
from hirestream.postings.services import IfMatch
from tests.support.postings import open_posting


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param('"1"', IfMatch(frozenset({1})), id="one-tag"),
        pytest.param('"1", "3"', IfMatch(frozenset({1, 3})), id="a-list"),
        pytest.param("*", IfMatch(frozenset(), any_version=True), id="star"),
        pytest.param('W/"1"', IfMatch(frozenset()), id="weak-never-matches"),
        pytest.param('"v1", "", 1', IfMatch(frozenset()), id="not-our-tags"),
        pytest.param('"\u00b2"', IfMatch(frozenset()), id="a-digit-int-refuses"),
        pytest.param('"' + "9" * 5000 + '"', IfMatch(frozenset()), id="too-many-digits"),
    ],
)
def test_if_match_names_the_versions_a_change_was_made_from(header: str, expected: IfMatch) -> None:
    assert if_match_of(header) == expected


def test_no_if_match_is_none() -> None:
    assert if_match_of(None) is None


def test_the_etag_of_a_posting_is_its_version_and_matches_itself() -> None:
    posting = open_posting()
    if_match = if_match_of(etag(posting))
    assert if_match is not None
    assert if_match.allows(posting.version)
    assert not if_match.allows(posting.version + 1)
