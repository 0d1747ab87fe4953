"""Versioned privacy-notice documents, shipped inside the package.

This module owns reading the notices in ``policy/documents/`` (an ``index.toml`` plus one text
file per version), ordering them by version, answering "did the terms of category C change
significantly since version V?", and diffing two versions. It does not record consent or decide
suspensions — the gate does that with the answers given here.

The installed policy version is the newest shipped document. Tests and the gate take a
:class:`PolicySet` as a parameter so that an upgrade can be simulated by passing a set with one
more document.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import logging
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from importlib import resources
from typing import Any

from wking_device.errors import ConfigError, UsageError
from wking_device.policy._catalog import validate_categories

__all__ = [
    "PolicyDiff",
    "PolicyDocument",
    "PolicySet",
    "parse_version",
    "shipped_policies",
]

_LOGGER = logging.getLogger(__name__)


def parse_version(version: str) -> tuple[int, ...]:
    """Turn ``"1.10"`` into ``(1, 10)`` so that versions compare numerically.

    Args:
        version: A dotted version of non-negative integers.

    Returns:
        The version as a tuple of integers.

    Raises:
        UsageError: The version is not dotted integers.
    """
    try:
        parts = tuple(int(part) for part in version.split("."))
    except ValueError:
        raise UsageError(f"not a policy version: {version!r}", remedy="e.g. 1.0") from None
    if any(part < 0 for part in parts):
        raise UsageError(f"not a policy version: {version!r}", remedy="e.g. 1.0")
    return parts


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyDocument:
    """One version of the privacy notice.

    Attributes:
        version: Dotted version, e.g. ``"1.1"``.
        date: The date it took effect.
        text: The full notice (Markdown).
        significant: Categories whose terms changed significantly against the previous version.
        summary: One line on what changed.
    """

    version: str
    date: date
    text: str
    significant: frozenset[str] = frozenset()
    summary: str = ""
    digest: str = field(init=False)
    """``sha256:<hex>`` of the text, recorded in the ledger with every grant."""

    def __post_init__(self) -> None:
        parse_version(self.version)
        validate_categories(self.significant)
        digest = hashlib.sha256(self.text.encode("utf-8")).hexdigest()
        object.__setattr__(self, "digest", f"sha256:{digest}")

    @property
    def key(self) -> tuple[int, ...]:
        """The sort key of the version."""
        return parse_version(self.version)


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyDiff:
    """What changed between two versions.

    Attributes:
        old: The older version.
        new: The newer version.
        significant: Categories with a significant change in any version after ``old`` up to
            and including ``new``.
        unified: A unified diff of the two texts.
    """

    old: str
    new: str
    significant: frozenset[str]
    unified: str


class PolicySet:
    """An ordered, immutable set of policy versions; the newest is the installed one.

    Args:
        documents: At least one document; versions must be unique.

    Raises:
        UsageError: No documents, or a version appears twice.
    """

    __slots__ = ("_by_version", "_documents")

    def __init__(self, documents: Iterable[PolicyDocument]) -> None:
        ordered = sorted(documents, key=lambda doc: doc.key)
        if not ordered:
            raise UsageError("a policy set needs at least one document")
        by_version = {doc.version: doc for doc in ordered}
        if len(by_version) != len(ordered):
            raise UsageError("a policy version appears twice")
        self._documents: tuple[PolicyDocument, ...] = tuple(ordered)
        self._by_version = by_version

    def __iter__(self) -> Iterator[PolicyDocument]:
        return iter(self._documents)

    def __len__(self) -> int:
        return len(self._documents)

    def __contains__(self, version: object) -> bool:
        return version in self._by_version

    @property
    def current(self) -> PolicyDocument:
        """The installed (newest) version."""
        return self._documents[-1]

    @property
    def versions(self) -> tuple[str, ...]:
        """All versions, oldest first."""
        return tuple(doc.version for doc in self._documents)

    def get(self, version: str | None = None) -> PolicyDocument:
        """Return one version, the current one by default.

        Args:
            version: The version, or ``None`` for the current one.

        Returns:
            The document.

        Raises:
            UsageError: No such version.
        """
        if version is None:
            return self.current
        try:
            return self._by_version[version]
        except KeyError:
            raise UsageError(
                f"no policy version {version!r}",
                remedy=f"known versions: {', '.join(self.versions)}",
            ) from None

    def changed_since(self, version: str) -> frozenset[str]:
        """Categories whose terms changed significantly after ``version`` up to the current one.

        A version not in the set (an unknown or malformed version in an old ledger) is treated as
        older than every known version: every category that ever changed significantly counts.

        Args:
            version: The version a grant was made under.

        Returns:
            The categories whose grants made under ``version`` are no longer valid.
        """
        try:
            since = parse_version(version)
        except UsageError:
            since = (-1,)
        changed: set[str] = set()
        for doc in self._documents:
            if doc.key > since:
                changed |= doc.significant
        return frozenset(changed)

    def with_document(self, document: PolicyDocument) -> PolicySet:
        """Return a new set with one more document (how tests simulate an upgrade).

        Args:
            document: The new version.

        Returns:
            The extended set.
        """
        return PolicySet((*self._documents, document))

    def diff(self, old: str, new: str) -> PolicyDiff:
        """Compare two versions.

        Args:
            old: One version.
            new: Another version (order does not matter; the older is taken as the base).

        Returns:
            The difference.

        Raises:
            UsageError: A version is unknown.
        """
        first, second = sorted((self.get(old), self.get(new)), key=lambda doc: doc.key)
        significant: set[str] = set()
        for doc in self._documents:
            if first.key < doc.key <= second.key:
                significant |= doc.significant
        unified = "".join(
            difflib.unified_diff(
                first.text.splitlines(keepends=True),
                second.text.splitlines(keepends=True),
                fromfile=f"policy {first.version}",
                tofile=f"policy {second.version}",
            )
        )
        return PolicyDiff(
            old=first.version,
            new=second.version,
            significant=frozenset(significant),
            unified=unified,
        )


def _document_from(entry: dict[str, Any], text: str) -> PolicyDocument:
    when = entry["date"]
    if isinstance(when, str):
        when = date.fromisoformat(when)
    return PolicyDocument(
        version=str(entry["version"]),
        date=when,
        text=text,
        significant=frozenset(entry.get("significant", ())),
        summary=str(entry.get("summary", "")),
    )


@functools.cache
def shipped_policies() -> PolicySet:
    """Return the policy documents shipped in this package (read once, cached).

    Returns:
        The shipped set; its newest document is the installed policy version.

    Raises:
        ConfigError: The shipped documents are missing or malformed (a broken installation).
    """
    root = resources.files("wking_device.policy").joinpath("documents")
    try:
        index = tomllib.loads(root.joinpath("index.toml").read_text(encoding="utf-8"))
        documents = [
            _document_from(entry, root.joinpath(entry["file"]).read_text(encoding="utf-8"))
            for entry in index["version"]
        ]
        return PolicySet(documents)
    except (OSError, KeyError, TypeError, ValueError, UsageError) as exc:
        raise ConfigError(
            f"the shipped policy documents are unreadable: {exc}",
            file="wking_device/policy/documents/index.toml",
            remedy="reinstall wking-device",
        ) from exc
