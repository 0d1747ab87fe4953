"""The store's writer process: seals and commits batches of appends for its parent store.

Run as ``python -P -m wking_device._store_child DATABASE TOKEN`` (with the parent's ``-I``,
``-E`` or ``-s``) by the store's appender (:mod:`wking_device.store._appender`; never by hand). It
lives outside the store package, so it loads only what it uses (the envelope, SQLite): about 150
modules instead of 280.
It reads framed messages from its standard input: data keys it may seal with, and batches of
checked records (their plaintext serialised by the parent, their data key, ``created_at`` and
``expires_at`` chosen by the parent). It takes every batch waiting, scrubs each plaintext of
MAC-shaped text (:func:`wking_device._scrub.scrub_plaintext`, as the writer thread does), seals it
under a nonce block it reserved durably first, inserts them in one durable transaction
(WAL, ``synchronous=FULL``) and only then writes one acknowledgement for those batches to its
standard output. The same transaction notes, in the ``meta`` row :data:`COMMITS_ROW` (under the
``TOKEN`` its parent gave it), which batches it committed and the numbers of the rows it inserted
for them: a parent that never reads the acknowledgement (the child died first) still knows. On
anything unexpected (an SQLite error, a full disk, a key it was not given, a malformed message)
it rolls back and exits without acknowledging: the parent hands the unacknowledged batches to
its own writer thread, which settles those the child noted as committed and writes the others,
reporting errors to the callers (nothing acknowledged is lost; a record written twice is ignored
by its id).

Its own parent is its only peer: it reads the parent's pickles (a pipe between the two
processes, nothing else can write to it) and writes only fixed-layout binary acknowledgements
(the parent never unpickles anything from the child). It logs nothing, ignores SIGINT and
SIGTERM (the parent ends it by closing the pipe, after which it finishes what it was sent, or
kills it), and exits when its parent's end of the pipe closes.

It does not check permits or records, choose keys, evict under the size cap, claim or delete
anything (the parent store does all of that).
"""

from __future__ import annotations

import os
import pickle
import signal
import sqlite3
import struct
import sys
from pathlib import Path
from typing import Any, Final

from wking_device._scrub import scrub_plaintext
from wking_device._store_sql import (
    ROW_OVERHEAD,
    _insert_sql,
    _padded_shape,
    _shapes,
    reserve_nonces,
)
from wking_device.crypto._envelope import NONCE_BLOCK, Sealer

FRAME: Final = struct.Struct("<I")
"""Length prefix of every message the parent writes (then a pickle of that many bytes)."""
ACK: Final = struct.Struct("<IqIIq")
"""One commit's acknowledgement: batches, last row number inserted (0: none), rows offered, rows
inserted, bytes added for the size cap (then that many 8-byte batch numbers)."""
BATCH_NO: Final = struct.Struct("<Q")
READY: Final = b"R"
"""Written once, first, when the child can take batches (its database open)."""
COMMITS_ROW: Final = "writer_process_commits"
"""``meta`` row: ``<token> <first>-<last>:<after>:<upto> ...``, the commits of the child started
with ``<token>`` whose acknowledgement its parent may not have read yet: batches numbered
``first`` to ``last`` were committed together, inserting the rows numbered ``after + 1`` to
``upto`` (one transaction's inserted rows take consecutive numbers). Batch numbers and row
numbers only: nothing of a record."""

_READ: Final = 1 << 20


class _Child:
    def __init__(self, conn: sqlite3.Connection, inp: int, out: int, token: str) -> None:
        self._conn = conn
        self._token = token
        self._noted: list[tuple[int, int, int, int]] = []
        """Commits noted in :data:`COMMITS_ROW` whose acknowledgement may be unread yet."""
        self._in = inp
        self._out = out
        self._buffer = bytearray()
        self._keys: dict[int, bytes] = {}
        self._sealers: dict[int, Sealer] = {}

    def _messages(self) -> list[Any] | None:
        """Every complete message waiting (blocking for the first one); None at end of input."""
        buffer = self._buffer
        while True:
            if len(buffer) >= FRAME.size:
                (size,) = FRAME.unpack_from(buffer)
                if len(buffer) >= FRAME.size + size:
                    break
            chunk = os.read(self._in, _READ)
            if not chunk:
                return None  # the parent is done (a partial message was not acknowledged)
            buffer += chunk
        os.set_blocking(self._in, False)
        try:
            while True:
                chunk = os.read(self._in, _READ)
                if not chunk:
                    break
                buffer += chunk
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(self._in, True)
        messages = []
        start = 0
        while len(buffer) - start >= FRAME.size:
            (size,) = FRAME.unpack_from(buffer, start)
            end = start + FRAME.size + size
            if end > len(buffer):
                break
            messages.append(pickle.loads(buffer[start + FRAME.size : end]))  # noqa: S301 - the parent
            start = end
        del buffer[:start]
        return messages

    def _sealer(self, key_id: int, count: int) -> Sealer:
        sealer = self._sealers.get(key_id)
        if sealer is None:
            sealer = self._sealers[key_id] = Sealer(key_id, self._keys[key_id])
        if sealer.remaining() < count:
            sealer.set_block(reserve_nonces(self._conn, key_id, NONCE_BLOCK))
        return sealer

    def _commit(self, batches: list[tuple[int, list[tuple[Any, ...]]]], unread: int) -> bytes:
        """Seal and insert ``batches`` in one durable transaction; return the acknowledgement.

        ``unread``: the parent's lowest batch number not acknowledged to it yet when it sent the
        last of ``batches`` (the notes of commits before it are dropped).
        """
        counts: dict[int, int] = {}
        for _, rows in batches:
            for row in rows:
                counts[row[2]] = counts.get(row[2], 0) + 1
        sealers = {key_id: self._sealer(key_id, count) for key_id, count in counts.items()}
        params: list[Any] = []
        extend = params.extend
        size = 0
        for _, rows in batches:
            for record_id, category, key_id, created, expires, plaintext in rows:
                payload = sealers[key_id].seal(
                    record_id,
                    category,
                    scrub_plaintext(plaintext, category),  # the parent only serialised it
                    created_at=created,
                    expires_at=expires,
                )
                size += len(payload)
                extend((record_id, category, key_id, created, expires, payload))
        rows_count = len(params) // 6
        size += ROW_OVERHEAD * rows_count
        numbers = [number for number, _ in batches]
        noted = [entry for entry in self._noted if entry[1] >= unread]
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = conn.total_changes
            shape = _padded_shape(rows_count)
            if shape:
                if shape > rows_count:
                    params += params[-6:] * (shape - rows_count)
                last = conn.execute(_insert_sql(shape), params).lastrowid or 0
            else:
                start = 0
                last = 0
                for count in _shapes(rows_count):
                    last = (
                        conn.execute(
                            _insert_sql(count), params[start : start + 6 * count]
                        ).lastrowid
                        or 0
                    )
                    start += 6 * count
            # read before the note below (another insert): a statement that inserted nothing
            # leaves the connection's previous row number, so nothing inserted notes no rows
            inserted = conn.total_changes - before
            upto = last if inserted else 0
            noted.append((numbers[0], numbers[-1], upto - inserted, upto))
            conn.execute(_NOTE_SQL, (_note(self._token, noted),))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._noted = noted
        if inserted != rows_count:
            size = -1  # duplicates were ignored: the parent measures the store again
        return ACK.pack(len(numbers), upto, rows_count, inserted, size) + b"".join(
            BATCH_NO.pack(number) for number in numbers
        )

    def run(self) -> None:
        while True:
            messages = self._messages()
            if messages is None:
                return
            batches: list[tuple[int, list[tuple[Any, ...]]]] = []
            unread = 0
            for message in messages:
                if message[0] == "keys":
                    self._keys.update(message[1])
                elif message[0] == "batch":
                    batches.append((message[1], message[2]))
                    unread = max(unread, message[3])
                else:
                    raise ValueError("unknown message")
            if batches:
                ack = self._commit(batches, unread)
                view = memoryview(ack)
                while view:
                    view = view[os.write(self._out, view) :]


_NOTE_SQL: Final = (
    "INSERT INTO meta (name, value) VALUES ('writer_process_commits', ?) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)


def _note(token: str, noted: list[tuple[int, int, int, int]]) -> str:
    """The :data:`COMMITS_ROW` value of a child's ``noted`` commits."""
    return " ".join([token, *(f"{a}-{b}:{c}:{d}" for a, b, c, d in noted)])


def commits_noted(value: object, token: str) -> list[tuple[int, int, int, int]]:
    """The commits a child noted in its :data:`COMMITS_ROW` value, if ``token`` is its.

    Returns:
        ``(first, last, after, upto)`` per commit: batches numbered ``first`` to ``last`` were
        committed together, inserting the rows numbered ``after + 1`` to ``upto``; empty when
        the row is another child's (or there is none, or it is not one a child wrote).
    """
    if not isinstance(value, str):
        return []
    token_found, *entries = value.split(" ")
    if token_found != token:
        return []
    noted: list[tuple[int, int, int, int]] = []
    try:
        for entry in entries:
            numbers, after, upto = entry.split(":")
            first, last = numbers.split("-")
            noted.append((int(first), int(last), int(after), int(upto)))
    except ValueError:
        return []
    return noted


def main(argv: list[str]) -> int:
    """Serve the parent named by the pipes on standard input and output; the exit status."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # mode=rw: the parent's database exists; never create one
    conn = sqlite3.connect(
        f"{Path(argv[1]).as_uri()}?mode=rw",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=256,
    )
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA cache_size = -8192")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            return 3  # not the store's database (the parent opened it in WAL mode)
        os.write(sys.stdout.fileno(), READY)
        _Child(conn, sys.stdin.fileno(), sys.stdout.fileno(), argv[2]).run()
    except Exception:  # noqa: BLE001 - the parent writes the batches again and reports errors
        return 1
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
