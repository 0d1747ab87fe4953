from __future__ import annotations

from datetime import date

import pytest

from wking_device.errors import UsageError
from wking_device.policy import PolicyDocument, PolicySet, parse_version, shipped_policies


def test_shipped_policies_are_versioned_and_readable() -> None:
    policies = shipped_policies()
    assert len(policies) >= 2
    assert policies.current.version == policies.versions[-1]
    for doc in policies:
        assert f"Version {doc.version}" in doc.text
        assert doc.digest.startswith("sha256:")
    oldest = policies.get(policies.versions[0])
    assert "privacy notice" in oldest.text


def test_versions_compare_numerically() -> None:
    a = PolicyDocument(version="1.9", date=date(2026, 1, 1), text="a")
    b = PolicyDocument(version="1.10", date=date(2026, 2, 1), text="b")
    assert PolicySet([b, a]).current is b
    assert parse_version("1.10") > parse_version("1.9")
    with pytest.raises(UsageError):
        parse_version("one")


def test_changed_since_collects_significant_changes_after_a_version() -> None:
    docs = [
        PolicyDocument(version="1.0", date=date(2026, 1, 1), text="a"),
        PolicyDocument(
            version="1.1", date=date(2026, 2, 1), text="b", significant=frozenset({"location"})
        ),
        PolicyDocument(
            version="2.0", date=date(2026, 3, 1), text="c", significant=frozenset({"diagnostics"})
        ),
    ]
    policies = PolicySet(docs)
    assert policies.changed_since("1.0") == {"location", "diagnostics"}
    assert policies.changed_since("1.1") == {"diagnostics"}
    assert policies.changed_since("2.0") == frozenset()
    # an unknown / garbled version counts as older than everything
    assert policies.changed_since("garbage") == {"location", "diagnostics"}


def test_diff_names_significant_categories_and_shows_text() -> None:
    diff = shipped_policies().diff("1.1", "1.0")
    assert (diff.old, diff.new) == ("1.0", "1.1")
    assert diff.significant == {"diagnostics"}
    assert "+Version 1.1" in diff.unified


def test_unknown_version_and_bad_category_are_refused() -> None:
    with pytest.raises(UsageError, match="no policy version"):
        shipped_policies().get("9.9")
    with pytest.raises(UsageError):
        PolicyDocument(
            version="1.0", date=date(2026, 1, 1), text="x", significant=frozenset({"nope"})
        )
    doc = PolicyDocument(version="1.0", date=date(2026, 1, 1), text="x")
    with pytest.raises(UsageError):
        PolicySet([doc, doc])


def test_the_current_notice_discloses_what_an_upload_carries() -> None:
    text = shipped_policies().current.text
    # every attribute the uploader sends is disclosed in words a reader understands
    for words in (
        "pseudonymous installation id",
        "its category",
        "record id",
        "id of the consent",
        "version of this notice",
        "name and version of this software",
    ):
        assert words in text, words
    # rights this version does not offer are not promised
    assert "correct it" not in text
    assert "wking data status" in text
    assert "wking data export" in text
