"""What the store asks of a record: its key scope, its plaintext columns, how long it is kept.

This module owns the rules a record meets before it is sealed: the data-key scope that decides
which withdrawals shred it (:func:`key_scope`), the checks of the columns stored in plaintext
(the id, never MAC-shaped, and a finite ``created_at``), the categories a set of scopes needs a
permit for, and the defaults of retention and eviction order.

It does not check permits (:mod:`wking_device.consent`), seal or write records, or hold state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

from wking_device._redact import MAC_RE
from wking_device.errors import UsageError
from wking_device.models import MAC_FIELDS, Record
from wking_device.policy import CATALOG

__all__ = ["DEFAULT_PRIORITY", "DEFAULT_RETENTION", "catalog_retention", "key_scope"]


DEFAULT_RETENTION: Final = 30 * 86400.0
"""Seconds a record is kept when its category has no retention of its own."""


DEFAULT_PRIORITY: Final[Mapping[str, int]] = {
    "diagnostics": 10,
    "software_info": 20,
    "device_info": 30,
    "location": 30,
    "operation_logs": 50,
}
"""Eviction order under the size cap: lower goes first; unknown categories count as 0."""


_MAC_CATEGORY: Final = "mac_addresses"
_CATALOG_IDS: Final = frozenset(CATALOG)


def key_scope(record: Record) -> str:
    """Return the data-key scope of a record: the categories whose withdrawal must shred it.

    A record of ``operation_logs`` that carries a MAC field is sealed under the data key of
    ``operation_logs+mac_addresses``, so withdrawing ``mac_addresses`` destroys exactly the
    records holding MAC addresses (and withdrawing ``operation_logs`` destroys them too).
    """
    body = record.body
    if record.category == _MAC_CATEGORY:
        return record.category
    if type(body) is dict:
        if MAC_FIELDS[0] in body or MAC_FIELDS[1] in body:
            return f"{record.category}+{_MAC_CATEGORY}"
    # a subclass's own __contains__ could hide a key that orjson writes all the same
    elif isinstance(body, dict) and (_HAS(body, MAC_FIELDS[0]) or _HAS(body, MAC_FIELDS[1])):
        return f"{record.category}+{_MAC_CATEGORY}"
    return record.category


_HAS: Final = dict.__contains__


_RECORD_ID_RE: Final = re.compile(r"[0-9A-Za-z_-]{1,64}")
_HEX_ID_RE: Final = re.compile(r"[0-9A-Fa-f]{13,64}")
"""Ids of hex digits only, longer than a bare MAC (:func:`~wking_device.models.new_record_id`
makes 32): a valid id that :data:`MAC_RE` cannot match (its 12 bare digits must not be part of a
longer run of hex digits, and its other forms need separators)."""


def _check_record(record: Record) -> None:
    """Refuse a record whose plaintext columns could not be stored as given.

    The id is a plaintext column: it must look like an id, never like a MAC. ``created_at`` is
    a plaintext column bound into the associated data: it must be a finite number.
    """
    if type(record) is not Record and not isinstance(record, Record):
        raise UsageError(
            f"records must be Record objects, not {type(record).__name__}",
            remedy="make each one with wking_device.models.Record(...)",
        )
    record_id = record.record_id
    if type(record_id) is str and _HEX_ID_RE.fullmatch(record_id) is not None:
        pass  # the common case, decided by one match
    elif (
        type(record_id) is not str
        or _RECORD_ID_RE.fullmatch(record_id) is None
        or MAC_RE.search(record_id) is not None
    ):
        raise UsageError(
            "a record id must be 1 to 64 letters, digits, '-' or '_', and not a MAC address",
            remedy="leave record_id to its default (models.new_record_id)",
        )
    body = record.body
    if type(body) is not dict and not isinstance(body, dict):
        raise UsageError(f"record {record_id}: its body must be a dict, not {type(body).__name__}")
    created = record.created_at
    if type(created) is not float and (type(created) is not int):
        raise UsageError(f"record {record_id}: created_at must be a number of seconds")
    if not math.isfinite(created):
        raise UsageError(f"record {record_id}: created_at must be finite")


def _retention_end(
    created_at: float, now: float, category: str, retention: Mapping[str, float]
) -> float:
    """When a record's retention ends: counted from its time, or from now if that is later."""
    return min(created_at, now) + retention.get(category, DEFAULT_RETENTION)


def _categories(scopes: list[str]) -> set[str]:
    """The categories a list of key scopes needs a permit for."""
    if len(scopes) == 1:
        return set(scopes[0].split("+"))
    return {category for scope in set(scopes) for category in scope.split("+")}


def catalog_retention() -> dict[str, float]:
    """Return each catalog category's retention period in seconds (the default retention)."""
    return {cid: category.retention_days * 86400.0 for cid, category in CATALOG.items()}
