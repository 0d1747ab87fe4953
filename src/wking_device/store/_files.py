"""The record database's file layer: the SQLite file, its writer lock, and its errors.

This module owns ``records.sqlite3`` and ``records.lock`` in the data directory as files: it
connects (WAL, ``synchronous=FULL``, or read-only and immutable on a read-only home), checks,
migrates and binds a freshly opened database to its key store, takes the single-writer lock, maps
SQLite errors to ours (:func:`_translate`, the one place), and answers the questions another
process asks without opening the store (:func:`store_in_use`, :func:`withdrawal_progress`).

It does not run database work (the writer thread of :mod:`wking_device.store._store` does), seal
or open records, or decide what is kept.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import sqlite3
import threading
from pathlib import Path
from typing import Final

from wking_device.config import Paths
from wking_device.crypto import KeyStore
from wking_device.errors import (
    StorageError,
    StoreFull,
    StoreIntegrityError,
    StoreInUse,
    WkingError,
    WrongKey,
)
from wking_device.store._schema import STATE_PENDING, STATE_REJECTED, migrate, same_store_id

__all__ = ["DB_FILE", "store_in_use", "withdrawal_progress"]

_LOGGER = logging.getLogger(__name__)

DB_FILE: Final = "records.sqlite3"
_LOCK_FILE: Final = "records.lock"
_HELD: set[str] = set()
"""Data directories whose store this process holds open for writing (to say so on a second open)."""
_HELD_LOCK = threading.Lock()
_CLAIMED_NOTE: Final = "claimed"
"""meta row: how many records the writer holds claimed (claims live in its memory; this row is
for read-only readers such as ``wking data status`` beside an agent, reset when reopened)."""
_WITHDRAWALS_DONE: Final = "withdrawals_done"
"""meta row: ``<seq>:<hash>`` of the last ledger withdrawal whose categories were shredded."""


def _translate(exc: sqlite3.Error, directory: Path) -> WkingError:
    """Turn a sqlite3 error into ours (the one place foreign database errors are mapped)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL:
        return StoreFull("the disk is full (or the database reached its page limit)")
    if code is not None and (code & 0xFF) == sqlite3.SQLITE_IOERR:
        # ENOSPC during a write can surface as an I/O error; tell the two apart by free space
        with contextlib.suppress(OSError):
            if shutil.disk_usage(directory).free < 1024 * 1024:
                return StoreFull("the disk is full")
    if code is not None and (code & 0xFF) in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
        return StoreIntegrityError(f"the record database is damaged: {exc}")
    return StorageError(f"record database error: {exc}")


def store_in_use(paths: Paths) -> bool:
    """Tell whether another process holds the store (its writer lock), without creating files."""
    try:
        fd = os.open(paths.data_dir / _LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # releases the lock if we took it
    return False


def withdrawal_progress(paths: Paths) -> tuple[str | None, int] | None:
    """Read, without writing, the last withdrawal carried out and the shredded-record counter.

    For ``wking consent withdraw`` while another process holds the store: it waits until that
    process has carried out the withdrawal.

    Returns:
        ``(marker, shredded)``, or ``None`` when there is no record database.
    """
    db = paths.data_dir / DB_FILE
    if not db.exists() or db.stat().st_size == 0:
        return None
    conn = _connect(db, readonly=True)
    try:
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
    except sqlite3.Error as exc:
        raise _translate(exc, paths.data_dir) from exc
    finally:
        conn.close()
    marker = meta.get(_WITHDRAWALS_DONE)
    return (None if marker is None else str(marker)), int(meta.get("shredded", 0))


def _unwritable(directory: Path) -> bool:
    """Whether nobody can write in ``directory`` now (a read-only mount, or no permission)."""
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(directory, os.W_OK)


def _connect(db: Path, *, readonly: bool) -> sqlite3.Connection:
    if readonly:
        # On a read-only home SQLite cannot create the WAL index (-shm) a read needs; the
        # database cannot change there either, so it is opened as immutable.
        flags = "mode=ro&immutable=1" if _unwritable(db.parent) else "mode=ro"
        conn = sqlite3.connect(
            f"{db.as_uri()}?{flags}", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        if not db.exists():
            # created private; SQLite gives its -wal and -shm files the same mode
            os.close(os.open(db, os.O_WRONLY | os.O_CREAT, 0o600))
        # statements cached: the store's own and every INSERT shape (see _shapes)
        conn = sqlite3.connect(
            db, isolation_level=None, check_same_thread=False, cached_statements=256
        )
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        if not readonly:
            # the first statement that reads the file: "file is not a database" surfaces here
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA journal_size_limit = 16777216")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA cache_size = -8192")
    except BaseException:
        conn.close()  # never leave a connection to the garbage collector (3.13 warns)
        raise
    return conn


def _prepare(conn: sqlite3.Connection, keys: KeyStore, *, readonly: bool, check: bool) -> None:
    """Check, migrate and bind a freshly opened database; reset claims of a crashed writer."""
    if check:
        result = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
        if result != ["ok"]:
            raise StoreIntegrityError(
                f"the record database failed its integrity check: {result[0]}",
                remedy="restore data/records.sqlite3 from a backup, or move it aside",
            )
    if not readonly:
        migrate(conn, store_id=keys.store_id)
    row = conn.execute("SELECT value FROM meta WHERE name = 'store_id'").fetchone()
    if row is None or not same_store_id(row[0], keys.store_id):
        raise WrongKey("the key store does not belong to this record database")
    if not readonly:
        # We hold the writer lock: claims left over belong to a writer that crashed. A value that
        # is no state at all is an edit (state is not authenticated): pending again. Rejected
        # records stay rejected (the collector refused them: never re-sent); an edit to
        # "rejected" only holds a record back from upload, and retention still deletes it.
        conn.execute(
            "UPDATE records SET state = ? WHERE state IS NOT ? AND state IS NOT ?",
            (STATE_PENDING, STATE_PENDING, STATE_REJECTED),
        )
        # claims are held in the writer's memory: a new writer holds none
        conn.execute("DELETE FROM meta WHERE name = ?", (_CLAIMED_NOTE,))


def _lock(paths: Paths) -> int:
    """Take the single-writer lock of the store (released when the process dies)."""
    lock_fd = os.open(paths.data_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(lock_fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            with _HELD_LOCK:
                here = _held_key(paths) in _HELD
            raise StoreInUse(in_this_process=here) from exc
        raise StorageError(f"cannot lock the record store: {exc.strerror}") from exc
    return lock_fd


def _held_key(paths: Paths) -> str:
    return os.path.realpath(paths.data_dir)
