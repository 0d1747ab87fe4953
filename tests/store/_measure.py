"""The store's size measured on its database file, the way the size cap counts it."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING

from wking_device.store import DB_FILE

if TYPE_CHECKING:
    from wking_device.config import Paths


def measured(paths: Paths) -> int:
    """Payload bytes plus 64 bytes a row (``ROW_OVERHEAD``), read from the database."""
    with contextlib.closing(sqlite3.connect(paths.data_dir / DB_FILE)) as conn:
        (size,) = conn.execute(
            "SELECT COALESCE(SUM(length(payload)), 0) + COUNT(*) * 64 FROM records"
        ).fetchone()
    return int(size)
