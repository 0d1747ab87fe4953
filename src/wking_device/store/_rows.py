"""The sealed rows as the store's writer holds them: opening, setting aside, nonces, size.

This module owns :class:`_Rows`, the base of :class:`~wking_device.store.RecordStore` that
declares the state the writer thread keeps (its connection, key store, sealers, claims, size
count) and the row work every role shares: opening rows (a sealer per data key, kept), setting
aside rows that fail authentication (quarantine) or whose key was shredded, reserving nonce
blocks durably before sealing, measuring the size counted against the cap, and rolling back.

It does not decide which rows to read or delete (claims in :mod:`._claims`, maintenance in
:mod:`._maintenance`, appends in :mod:`._store`), run a thread, or hold state of its own:
:class:`~wking_device.store.RecordStore` sets every attribute declared here.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from typing import TYPE_CHECKING, Final

from wking_device._store_sql import ROW_OVERHEAD, reserve_nonces
from wking_device.crypto import NONCE_BLOCK, Sealer
from wking_device.errors import RecordCorrupt
from wking_device.store._schema import record_from_row

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from wking_device.consent import Ledger
    from wking_device.consent._gate import LedgerView
    from wking_device.crypto import DataKey, KeyStore
    from wking_device.models import Record
    from wking_device.store._appender import _Appender
    from wking_device.store._schema import PlaintextReader

_LOGGER = logging.getLogger(__name__)

_ROW_OVERHEAD: Final = ROW_OVERHEAD
_CHUNK: Final = 500
_MEASURE: Final = (
    f"SELECT COALESCE(SUM(length(payload)), 0) + COUNT(*) * {_ROW_OVERHEAD} FROM records"  # noqa: S608
)


class _Rows:
    """The writer's state and the row work shared by appends, claims and maintenance."""

    if TYPE_CHECKING:  # set by RecordStore.__init__ (writer thread only); no run-time annotations
        keys: KeyStore
        readonly: bool
        max_bytes: int
        _conn: sqlite3.Connection
        _directory: Path
        _clock: Callable[[], float]
        _retention: dict[str, float]
        _priority: dict[str, int]
        _sealers: dict[int, Sealer]
        _reader: PlaintextReader
        _claims: dict[str, int]
        _floors: dict[frozenset[str] | None, int]
        _floor_lock: threading.Lock
        _floor_epoch: int
        _bytes: int
        _child_added: int
        _child_keys: dict[str, DataKey]
        _appender: _Appender | None
        _ledger_file: Path | None
        _ledger: Ledger | None
        _watching: bool
        _consent_view: LedgerView | None
        _view_stamp: tuple[int, int, int] | None

    _SELECT: Final = (
        "SELECT seq, record_id, category, key_id, created_at, expires_at, payload FROM records"
    )

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _reserve(self, sealer: Sealer) -> None:
        """Durably reserve a nonce block for a key before any nonce of it is used."""
        sealer.set_block(reserve_nonces(self._conn, sealer.key_id, NONCE_BLOCK))

    def _measure(self) -> int:
        """The bytes the size cap counts, less those a writer process already added.

        The process's additions (``_child_added``, counted on the event loop) are read before
        the query: a commit acknowledged in between is counted twice until the next measure
        (the cap errs towards evicting early, by at most one commit).
        """
        added = self._child_added
        return int(self._conn.execute(_MEASURE).fetchone()[0]) - added

    @property
    def _stored_bytes(self) -> int:
        """The bytes the size cap counts now (the writer thread's and a writer process's)."""
        return self._bytes + self._child_added

    def _keys_paused(self) -> contextlib.AbstractContextManager[None]:
        """Around work that destroys data keys: no writer process runs (or starts) meanwhile."""
        appender = self._appender
        return contextlib.nullcontext() if appender is None else appender.paused()

    def _forget_keys(self, destroyed: Iterable[int]) -> None:
        """Drop every cached use of destroyed data keys (writer thread)."""
        gone = set(destroyed)
        if not gone:
            return
        for key_id in gone:
            self._sealers.pop(key_id, None)
        for scope, dek in list(self._child_keys.items()):
            if dek.key_id in gone:
                self._child_keys.pop(scope, None)

    def _lower_floors(self, lowest: int) -> None:
        """Have every claim start no later than after ``lowest`` (from either thread)."""
        with self._floor_lock:
            self._floor_epoch += 1
            floors = self._floors
            for allowed, floor in floors.items():
                if floor > lowest:
                    floors[allowed] = lowest

    def _sealer_for(self, key_id: int) -> Sealer | None:
        sealer = self._sealers.get(key_id)
        if sealer is None:
            dek = self.keys.data_key(key_id)
            if dek is None:
                return None
            sealer = self._sealers[key_id] = Sealer(key_id, dek.key)
        return sealer

    def _open_rows(
        self, rows: list[tuple[int, str, str, int, float, float, bytes]]
    ) -> tuple[list[tuple[int, Record]], list[tuple[int, str]], list[int]]:
        """Decrypt rows; return (good, quarantine candidates with reason, shredded seqs)."""
        good: list[tuple[int, Record]] = []
        bad: list[tuple[int, str]] = []
        shredded: list[int] = []
        missing: dict[int, bool] = {}  # key id -> destroyed? (looked up once per call)
        for seq, record_id, category, key_id, created_at, expires_at, payload in rows:
            sealer = self._sealer_or_set_aside(seq, key_id, missing, bad, shredded)
            if sealer is None:
                continue
            try:
                good.append(
                    (
                        seq,
                        record_from_row(
                            record_id, category, created_at, payload, sealer, expires_at=expires_at
                        ),
                    )
                )
            except RecordCorrupt:
                bad.append((seq, "authentication failed"))
        return good, bad, shredded

    def _sealer_or_set_aside(
        self,
        seq: int,
        key_id: object,
        missing: dict[int, bool],
        bad: list[tuple[int, str]],
        shredded: list[int],
    ) -> Sealer | None:
        """The sealer of a row's key, or ``None`` with the row filed as shredded or bad.

        ``missing`` remembers, per call, which key ids have no sealer (destroyed or unknown).
        """
        if type(key_id) is not int:  # an edited row (SQLite keeps text in any column)
            bad.append((seq, "authentication failed"))
            return None
        sealer = None if key_id in missing else self._sealer_for(key_id)
        if sealer is None:
            if key_id not in missing:
                missing[key_id] = self.keys.was_destroyed(key_id)
            if missing[key_id]:
                shredded.append(seq)
            else:
                bad.append((seq, "unknown data key"))
        return sealer

    def _set_aside_now(self, bad: list[tuple[int, str]], shredded: list[int]) -> None:
        """:meth:`_set_aside` in a transaction of its own, then the size measured again."""
        if not (bad or shredded):
            return
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._set_aside(bad, shredded)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._bytes = self._measure()

    def _set_aside(self, bad: list[tuple[int, str]], shredded: list[int]) -> None:
        """Quarantine failing rows and drop shredded ones (inside the caller's transaction)."""
        conn = self._conn
        now = self._clock()
        for seq, reason in bad:
            conn.execute(
                "INSERT OR REPLACE INTO quarantine "
                "(seq, record_id, category, key_id, created_at, reason, quarantined_at, payload) "
                "SELECT seq, record_id, category, key_id, created_at, ?, ?, payload "
                "FROM records WHERE seq = ?",
                (reason, now, seq),
            )
            _LOGGER.warning("record #%d quarantined: %s", seq, reason)
        gone = [seq for seq, _ in bad] + shredded
        for start in range(0, len(gone), _CHUNK):
            chunk = gone[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            conn.execute(f"DELETE FROM records WHERE seq IN ({marks})", chunk)  # noqa: S608
        if bad:
            conn.execute(
                "UPDATE meta SET value = value + ? WHERE name = 'quarantined'", (len(bad),)
            )
        if shredded:
            conn.execute(
                "UPDATE meta SET value = value + ? WHERE name = 'shredded'", (len(shredded),)
            )
