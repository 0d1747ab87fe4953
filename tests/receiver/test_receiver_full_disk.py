"""The receiver's database on a really full disk (a 1 MiB tmpfs: tests/_full_disk.py)."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest
from tests._full_disk import fill, tiny_tmpfs

from wking_device.receiver._db import ReceiverDB
from wking_device.receiver._decode import ReceivedRecord

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Path]:
    yield from tiny_tmpfs(tmp_path / "tiny")


def _records(prefix: str, count: int) -> list[ReceivedRecord]:
    return [
        ReceivedRecord(f"{prefix}-{i}", "operation_logs", "inst", "c", "1", "x" * 400, i, False)
        for i in range(count)
    ]


def test_a_request_that_fails_on_a_full_disk_does_not_wedge_the_next_ones(tiny: Path) -> None:
    db = ReceiverDB(tiny / "receiver.db")
    try:
        assert db.store(_records("a", 10), None) == 10
        filler = fill(tiny)
        # less than SQLite's page cache holds: the INSERTs succeed in memory, and the COMMIT,
        # which writes the transaction's pages to the WAL, finds the disk full
        with pytest.raises(sqlite3.OperationalError, match="full"):
            db.store(_records("b", 500), None)
        filler.unlink()
        # the failed request stored nothing, and the next ones are stored: SQLite rolls back a
        # transaction whose COMMIT found the disk full, so none is left open to wedge them
        assert db.store(_records("c", 10), None) == 10
        assert db.store(_records("b", 500), None) == 500
        reader = sqlite3.connect(tiny / "receiver.db")
        try:
            assert reader.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 520
        finally:
            reader.close()
    finally:
        db.close()
