"""The database schema, its migrations, and the functions between records and rows.

This module owns the SQLite layout of the record store (``PRAGMA user_version`` is the schema
version) and the conversion of a :class:`~wking_device.models.Record` to a sealed row and back.
Plaintext columns are only what scheduling needs: sequence, record id, category, key id,
created/expires times and state. Everything else (body, consent id, policy version) is inside the
AES-GCM payload. It does not run transactions or hold keys.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any, Final

import orjson

from wking_device.errors import RecordCorrupt, StorageError, UsageError
from wking_device.models import Record

if TYPE_CHECKING:
    from wking_device.crypto import Sealer

__all__ = [
    "SCHEMA_VERSION",
    "STATE_CLAIMED",
    "STATE_PENDING",
    "STATE_REJECTED",
    "encode_body",
    "migrate",
    "record_from_row",
    "row_from_record",
]

SCHEMA_VERSION: Final = 1
STATE_PENDING: Final = 0
STATE_CLAIMED: Final = 1
STATE_REJECTED: Final = 2
"""The collector declared the record rejected (OTLP ``partial_success``): kept for inspection,
never claimed again, deleted by retention or erasure like any other row."""

# Each entry upgrades the schema from version (index) to (index + 1); never edit a shipped entry.
_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value ANY
    );
    CREATE TABLE records (
        seq INTEGER PRIMARY KEY,
        record_id TEXT NOT NULL UNIQUE,
        category TEXT NOT NULL,
        key_id INTEGER NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,
        payload BLOB NOT NULL
    );
    CREATE INDEX records_by_category ON records (category);
    CREATE TABLE quarantine (
        seq INTEGER PRIMARY KEY,
        record_id TEXT,
        category TEXT,
        key_id INTEGER,
        created_at REAL,
        reason TEXT NOT NULL,
        quarantined_at REAL NOT NULL,
        payload BLOB
    );
    CREATE TABLE nonce_blocks (
        key_id INTEGER PRIMARY KEY,
        next INTEGER NOT NULL
    );
    """,
)


def migrate(conn: sqlite3.Connection, *, store_id: str) -> int:
    """Bring a database to :data:`SCHEMA_VERSION`, each step in its own transaction.

    Args:
        conn: An open connection (autocommit mode: ``isolation_level=None``).
        store_id: The key store id a new database is bound to.

    Returns:
        The schema version found before migrating (0 for a new database).

    Raises:
        StorageError: The database is newer than this library.
    """
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise StorageError(
            f"the record database has schema version {found}; this library knows up to "
            f"{SCHEMA_VERSION}",
            remedy="upgrade wking-device",
        )
    for version in range(found, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            if version == 0:
                conn.execute(
                    "INSERT INTO meta (name, value) VALUES ('store_id', ?), "
                    "('quarantined', 0), ('evicted', 0), ('shredded', 0)",
                    (store_id,),
                )
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


def encode_body(record: Record) -> bytes:
    """Serialise what a row keeps encrypted: the body, the consent id and the policy version.

    Raises:
        UsageError: The body is not JSON-serialisable (checked before the record is queued, so
            one bad record fails only its own append).
    """
    try:
        return orjson.dumps({"c": record.consent_id, "p": record.policy_version, "b": record.body})
    except TypeError as exc:
        raise UsageError(f"record {record.record_id} has a body that is not JSON: {exc}") from exc


def row_from_record(
    record: Record, plaintext: bytes, sealer: Sealer, expires_at: float
) -> tuple[str, str, int, float, float, bytes]:
    """Seal a record into a row: ``(record_id, category, key_id, created, expires, payload)``.

    Args:
        record: The record.
        plaintext: Its :func:`encode_body`.
        sealer: The sealer of the record's data key.
        expires_at: When retention ends (UTC seconds).

    Returns:
        The values for an ``INSERT`` into ``records``.
    """
    return (
        record.record_id,
        record.category,
        sealer.key_id,
        record.created_at,
        expires_at,
        sealer.seal(record.record_id, record.category, plaintext),
    )


def record_from_row(
    record_id: str, category: str, created_at: float, payload: bytes, sealer: Sealer
) -> Record:
    """Open a sealed row into a record.

    Raises:
        RecordCorrupt: The payload does not authenticate or does not decode.
    """
    plaintext = sealer.open(record_id, category, payload)
    try:
        body: Any = orjson.loads(plaintext)
        return Record(
            record_id=record_id,
            category=category,
            created_at=created_at,
            consent_id=body["c"],
            policy_version=body["p"],
            body=body["b"],
        )
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise RecordCorrupt("record body does not decode", record_id=record_id) from exc
