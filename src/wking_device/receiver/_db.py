"""The receiver's SQLite file: one row per distinct ``record_id``, duplicates ignored.

Schema version 1 (``PRAGMA user_version``)::

    records(record_id TEXT PRIMARY KEY, category, installation_id, consent_id, policy_version,
            body TEXT, time_unix_nano INTEGER, source_ip TEXT NULL, received_at REAL)

``source_ip`` is NULL unless the batch declared ``ip_address`` consent. Each request's records
are committed in one transaction, synced to disk (WAL, ``synchronous=FULL``) before the server
answers: an acknowledged record survives a power loss. All writes go through one thread
(:class:`ReceiverDB` is used from the server through a single-worker executor).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from wking_device.errors import ConfigError

if TYPE_CHECKING:
    from wking_device.receiver._decode import ReceivedRecord

__all__ = ["DB_FILE", "ReceiverDB", "export_records"]

DB_FILE: Final = "receiver.db"
_SCHEMA_VERSION: Final = 1
_COLUMNS: Final = (
    "record_id",
    "category",
    "installation_id",
    "consent_id",
    "policy_version",
    "body",
    "time_unix_nano",
    "source_ip",
    "received_at",
)


class ReceiverDB:
    """The receiver's database (open it in the thread that will use it).

    Args:
        path: The SQLite file (created with the schema when missing).

    Raises:
        ConfigError: The file cannot be opened or is no receiver database (names it).
    """

    def __init__(self, path: Path) -> None:
        try:
            # the received records (source IPs among them) for the owner only, whatever the
            # directory's mode: SQLite gives its -wal and -shm files the database's mode
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError as exc:
            raise ConfigError(
                f"cannot create the receiver database: {exc.strerror or exc}", file=str(path)
            ) from exc
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.DatabaseError as exc:  # a directory, a path that cannot be created
            raise _unusable(path, exc) from exc
        try:
            self._open(path)
        except BaseException:
            self._conn.close()
            raise

    def _open(self, path: Path) -> None:
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before the server answers 200, and the uploader
            # deletes its copy on that answer (NORMAL could lose acknowledged records to a
            # power loss)
            self._conn.execute("PRAGMA synchronous=FULL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise _unusable(path, exc) from exc
        if version == 0:
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS records (record_id TEXT PRIMARY KEY, category TEXT, "
                "installation_id TEXT, consent_id TEXT, policy_version TEXT, body TEXT NOT NULL, "
                "time_unix_nano INTEGER NOT NULL, source_ip TEXT, received_at REAL NOT NULL)"
            )
            self._conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        elif version != _SCHEMA_VERSION:
            raise ConfigError(
                f"unknown receiver schema version {version}",
                file=str(path),
                remedy="use the wking version that wrote it, or move the file away",
            )

    def store(self, records: Sequence[ReceivedRecord], source_ip: str | None) -> int:
        """Insert records, ignoring ids already stored; return how many were new."""
        now = time.time()
        rows = [
            (
                r.record_id,
                r.category,
                r.installation_id,
                r.consent_id,
                r.policy_version,
                r.body,
                r.time_unix_nano,
                source_ip if r.keep_ip else None,
                now,
            )
            for r in records
        ]
        before = self._conn.total_changes
        self._conn.execute("BEGIN")
        try:
            self._conn.executemany(
                "INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return self._conn.total_changes - before

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def export_records(path: Path) -> list[dict[str, Any]]:
    """Read every stored record (read-only; the file must exist), oldest first.

    Args:
        path: The receiver's database file.

    Returns:
        One dict per record with the columns of the schema.

    Raises:
        ConfigError: The file cannot be read or is no receiver database (names it).
    """
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from exc
    try:
        cursor = conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM records ORDER BY received_at, record_id"  # noqa: S608 - constant columns
        )
        return [dict(zip(_COLUMNS, row, strict=True)) for row in cursor]
    except sqlite3.DatabaseError as exc:
        raise _unusable(path, exc) from exc
    finally:
        conn.close()


def _unusable(path: Path, exc: sqlite3.DatabaseError) -> ConfigError:
    return ConfigError(
        f"not a usable receiver database: {exc}",
        file=str(path),
        remedy="move the file away to start with an empty one",
    )
