"""The record store's shared SQL: INSERT shapes, the size cap's row cost, nonce reservations.

A leaf module (standard library only), shared by the store's writer thread
(:mod:`wking_device.store`) and its writer process (:mod:`wking_device._store_child`), which
imports it without loading the store package.

It runs one transaction itself (:func:`reserve_nonces`); the rest are shapes and constants.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from typing import Final

ROW_OVERHEAD: Final = 64
"""Bytes counted per row beside its payload (columns, index entries) for the size cap."""


_INSERT_ROWS: Final = 1000
"""Rows per INSERT statement (6 parameters each, under SQLite's 32,766-variable limit)."""


_SHAPE_STEP: Final = 16
_SHAPE_MAX: Final = _INSERT_ROWS - _INSERT_ROWS % _SHAPE_STEP


def _shapes(rows: int) -> list[int]:
    """Split ``rows`` into INSERT sizes from a small set, so prepared statements are reused.

    Preparing a multi-row INSERT costs about as much again as binding it (≈ 2 µs a row): sizes
    are 1 to 16 rows or multiples of 16 (at most 77 shapes, within the connection's statement
    cache), so a batch of any size takes one or two statements that were prepared before.
    """
    if rows <= _SHAPE_STEP:
        return [rows]
    shapes: list[int] = []
    while rows >= _SHAPE_STEP:
        count = min(rows, _SHAPE_MAX)
        count -= count % _SHAPE_STEP
        shapes.append(count)
        rows -= count
    if rows:
        shapes.append(rows)
    return shapes


def _padded_shape(rows: int) -> int:
    """The shape (see :func:`_shapes`) one statement of ``rows`` rows is padded to; 0 if none.

    At most ``_SHAPE_STEP - 1`` padding rows (each a copy of the last row, ignored by SQLite);
    0 when ``rows`` needs more than one statement.
    """
    if rows <= _SHAPE_STEP:
        return rows
    shape = -(-rows // _SHAPE_STEP) * _SHAPE_STEP
    return shape if shape <= _SHAPE_MAX else 0


@functools.lru_cache(maxsize=128)
def _insert_sql(rows: int) -> str:
    """One multi-row INSERT of ``rows`` rows (a batch takes one to a few, see :func:`_shapes`).

    A single statement is a single ``sqlite3_step``: the writer gives up and re-takes the GIL
    once per statement instead of once per row. Each re-take can wait for the event loop's thread
    for up to the interpreter's switch interval, which made per-row ``executemany`` the
    bottleneck under 100 producers (see docs/security.md, "Performance").
    """
    values = ",".join(["(?, ?, ?, ?, ?, ?)"] * rows)
    return (
        "INSERT OR IGNORE INTO records "  # noqa: S608 - placeholders only, no data in the text
        f"(record_id, category, key_id, created_at, expires_at, payload) VALUES {values}"
    )


def reserve_nonces(conn: sqlite3.Connection, key_id: int, block: int) -> int:
    """Durably reserve the next ``block`` nonce counters of a data key; the first of them.

    One ``BEGIN IMMEDIATE`` transaction: two connections (the writer thread's and the writer
    process's) never get the same block.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        (end,) = conn.execute(
            "INSERT INTO nonce_blocks (key_id, next) VALUES (?, ?) "
            "ON CONFLICT (key_id) DO UPDATE SET next = next + excluded.next RETURNING next",
            (key_id, block),
        ).fetchone()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # the first error is the one to report
                conn.execute("ROLLBACK")
        raise
    return int(end) - block
