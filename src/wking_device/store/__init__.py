"""The encrypted local record store.

This package owns the SQLite database of collected records: durable group-committed appends under
a consent permit, claim/ack/release for the uploader, crypto-shredding purge, retention sweeps,
export for the owner, quarantine of records that fail authentication, a size cap with counted
evictions, and the counts ``wking data status`` shows. Keys come from :mod:`wking_device.crypto`;
consent permits from :mod:`wking_device.consent`.
"""

from __future__ import annotations

from wking_device._public import publish as _publish
from wking_device.models import MAC_FIELDS
from wking_device.store._files import DB_FILE, store_in_use, withdrawal_progress
from wking_device.store._maintenance import StoreStats, SweepResult
from wking_device.store._records import DEFAULT_PRIORITY, DEFAULT_RETENTION, key_scope
from wking_device.store._schema import OpenedRecord, PlaintextReader
from wking_device.store._store import RecordStore, open_store

__all__ = [
    "DB_FILE",
    "DEFAULT_PRIORITY",
    "DEFAULT_RETENTION",
    "MAC_FIELDS",
    "OpenedRecord",
    "PlaintextReader",
    "RecordStore",
    "StoreStats",
    "SweepResult",
    "key_scope",
    "open_store",
    "store_in_use",
    "withdrawal_progress",
]

_publish(__name__, globals(), __all__)
