"""Issue 7: resources on failed opens, store ids of any shape, bound columns, borrowed permits."""

from __future__ import annotations

import gc
import sqlite3
import warnings
from typing import TYPE_CHECKING

import pytest

from wking_device.errors import StoreIntegrityError
from wking_device.store import DB_FILE, open_store

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(name="opened")
def fixture_opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[sqlite3.Connection]]:
    """Every SQLite connection the code under test opens (sqlite3 is not ours: spying is fair)."""
    real = sqlite3.connect
    opened: list[sqlite3.Connection] = []

    def connect(*args, **kwargs):  # type: ignore[no-untyped-def]
        conn = real(*args, **kwargs)
        opened.append(conn)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    yield opened
    for conn in opened:
        conn.close()


def _closed(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def _garbage(paths) -> Path:  # type: ignore[no-untyped-def]
    db = paths.data_dir / DB_FILE
    db.write_bytes(b"this is not a database, just garbage bytes " * 200)
    return db


@pytest.mark.parametrize("readonly", [False, True])
def test_a_failed_open_leaks_no_connection(paths, settings, gate, readonly: bool) -> None:
    # Python 3.13 reports a connection left to the garbage collector as a ResourceWarning
    _garbage(paths)
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(StoreIntegrityError):
            open_store(paths, settings, readonly=readonly)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.mark.parametrize("readonly", [False, True])
def test_a_failed_open_closes_every_connection_it_opened(
    paths, settings, gate, opened: list[sqlite3.Connection], readonly: bool
) -> None:
    # on 3.11 nothing warns: check the connections themselves
    _garbage(paths)
    with pytest.raises(StoreIntegrityError):
        open_store(paths, settings, readonly=readonly)
    assert opened
    assert all(_closed(conn) for conn in opened)
    # and a failed open leaves the store openable by the next process: the lock was released
    (paths.data_dir / DB_FILE).unlink()
    store = open_store(paths, settings)
    store.close()
