"""The data categories this library may collect, as data (DESIGN §3).

This module owns the catalog: for every category its user-facing description, purpose,
sensitivity, prerequisites and retention period. It does not decide whether a category may be
collected right now — that is the consent gate's job (:mod:`wking_device.consent`) — and it holds
no policy text (see :mod:`wking_device.policy._documents`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from wking_device.errors import UsageError

__all__ = [
    "CATALOG",
    "CATEGORY_IDS",
    "Category",
    "dependents_of",
    "get_category",
    "validate_categories",
    "with_prerequisites",
]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class Category:
    """One data category.

    Attributes:
        id: The stable identifier used in the ledger, records and the CLI.
        title: A short human name.
        description: What is collected, in the words shown to the user before a grant.
        purpose: Why it is collected.
        sensitive: Sensitive categories need a separate grant and, for minors, a guardian grant.
        requires: Categories that must be granted too (``mac_addresses`` needs
            ``operation_logs``).
        retention_days: How long records of this category are kept locally at most.
        permission: ``True`` for categories that permit a use of other data rather than describe
            data of their own (``cross_border_transfer``).
    """

    id: str
    title: str
    description: str
    purpose: str
    sensitive: bool
    requires: frozenset[str] = frozenset()
    retention_days: int = 30
    permission: bool = False


_CATEGORIES = (
    Category(
        id="operation_logs",
        title="Bluetooth operation logs",
        description=(
            "Bluetooth operations between this computer and your W-KING speakers: scans, "
            "connection attempts and their outcomes, GATT reads and writes, commands, error codes "
            "and timings. Without the mac_addresses grant these records hold no MAC address."
        ),
        purpose="Find and fix connection and control problems with W-KING speakers.",
        sensitive=False,
        retention_days=30,
    ),
    Category(
        id="device_info",
        title="Device information",
        description=(
            "The speaker's model, firmware and hardware revision, battery level and signal "
            "strength (RSSI); this computer's operating system and Bluetooth adapter model."
        ),
        purpose="Relate problems to speaker models, firmware versions and host platforms.",
        sensitive=False,
        retention_days=90,
    ),
    Category(
        id="software_info",
        title="Software versions",
        description=(
            "The versions of this library, of bleak, of BlueZ and of Python. Never a list of "
            "installed applications."
        ),
        purpose="Relate problems to software versions.",
        sensitive=False,
        retention_days=90,
    ),
    Category(
        id="mac_addresses",
        title="MAC addresses",
        description=(
            "The Bluetooth MAC address of this computer's adapter and of your speakers, attached "
            "to operation log records. MAC addresses identify devices; they are never written to "
            "disk in plaintext."
        ),
        purpose="Tell apart problems of individual speakers and adapters across sessions.",
        sensitive=True,
        requires=frozenset({"operation_logs"}),
        retention_days=30,
    ),
    Category(
        id="location",
        title="Coarse location",
        description=(
            "The coarse location (for example a city or region) you configured for the agent "
            "with the 'location' setting. Never GPS or network-derived positions."
        ),
        purpose="Relate radio problems to regional conditions and regulations.",
        sensitive=True,
        retention_days=30,
    ),
    Category(
        id="diagnostics",
        title="Diagnostics",
        description=(
            "Information about failures of this software: error types and scrubbed error messages "
            "(MAC addresses and file paths removed)."
        ),
        purpose="Find and fix faults in this software.",
        sensitive=False,
        retention_days=30,
    ),
    Category(
        id="ip_address",
        title="IP address",
        description=(
            "Lets the collector keep the source IP address of the upload connection. Without it "
            "the collector is asked to discard it."
        ),
        purpose="Detect abuse of the collector and relate problems to networks.",
        sensitive=True,
        retention_days=7,
    ),
    Category(
        id="cross_border_transfer",
        title="Cross-border transfer",
        description=(
            "Permission to upload raw records to a collector outside your region. Without it, "
            "records are de-identified before they leave (MAC addresses replaced by keyed "
            "pseudonyms, location dropped) or not sent at all."
        ),
        purpose="Allow a collector in another region to process the data you granted.",
        sensitive=True,
        retention_days=30,
        permission=True,
    ),
)

CATALOG: Mapping[str, Category] = MappingProxyType({c.id: c for c in _CATEGORIES})
"""Every category by id, in the order they are shown to the user."""

CATEGORY_IDS: tuple[str, ...] = tuple(CATALOG)
"""The category ids, in catalog order."""


def get_category(category_id: str) -> Category:
    """Return a category by id.

    Args:
        category_id: The category's id.

    Returns:
        The category.

    Raises:
        UsageError: The id is not in the catalog.
    """
    try:
        return CATALOG[category_id]
    except KeyError:
        raise UsageError(
            f"unknown data category: {category_id!r}",
            remedy=f"use one of: {', '.join(CATEGORY_IDS)}",
        ) from None


def validate_categories(categories: Iterable[str]) -> frozenset[str]:
    """Check that every id is in the catalog.

    Args:
        categories: Category ids.

    Returns:
        The ids as a frozen set.

    Raises:
        UsageError: An id is not in the catalog or not a string, or ``categories`` is one
            string (not a list of them), a mapping (``{"location": False}`` would name its
            keys whatever the values say) or not iterable.
    """
    if isinstance(categories, str | bytes):
        raise UsageError(
            "categories must be a list of category names, not one string",
            remedy=f"wrap it in a list: [{categories!r}]"
            if isinstance(categories, str) and categories in CATALOG
            else "wrap it in a list, e.g. ['operation_logs']",
        )
    if isinstance(categories, Mapping):
        raise UsageError(
            f"categories must be a list of category names, not {type(categories).__name__}",
            remedy="list the chosen categories, e.g. ['operation_logs']",
        )
    try:
        chosen = frozenset(categories)
    except TypeError:
        raise UsageError(
            f"categories must be a list of category names, not {type(categories).__name__}",
            remedy="pass a list, e.g. ['operation_logs']",
        ) from None
    for category_id in chosen:
        if not isinstance(category_id, str):
            raise UsageError(
                f"a category name is a string, not {type(category_id).__name__}",
                remedy="pass a list of names, e.g. ['operation_logs']",
            )
    for category_id in sorted(chosen):
        get_category(category_id)
    return chosen


def with_prerequisites(categories: Iterable[str]) -> frozenset[str]:
    """Return the categories together with everything they transitively require.

    Args:
        categories: Category ids (must be in the catalog).

    Returns:
        The closure under ``requires``.
    """
    result: set[str] = set()
    pending = list(categories)
    while pending:
        category_id = pending.pop()
        if category_id in result:
            continue
        result.add(category_id)
        pending.extend(get_category(category_id).requires)
    return frozenset(result)


def dependents_of(categories: Iterable[str]) -> frozenset[str]:
    """Return the categories that (transitively) require any of the given ones, excluding them.

    Withdrawing ``operation_logs`` also withdraws ``mac_addresses``, which needs it.

    Args:
        categories: Category ids.

    Returns:
        The dependent categories.
    """
    base = frozenset(categories)
    return frozenset(
        c.id for c in _CATEGORIES if c.id not in base and with_prerequisites([c.id]) & base
    )
