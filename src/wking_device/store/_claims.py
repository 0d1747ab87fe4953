"""Claims for the uploader: claim, acknowledge, release and reject stored records.

This module owns :class:`_Claims`, the part of :class:`~wking_device.store.RecordStore` that
runs the uploader's calls on the writer thread: claiming the oldest pending, unexpired rows of
the allowed scopes (opened, or cut into :class:`~wking_device.store.OpenedRecord` columns),
deleting acknowledged ones (synced or not), making released ones pending again, setting
rejected ones aside, and keeping the claims in memory consistent with the rows.

It does not queue work or run the writer thread (:mod:`._store`), purge, sweep or export
(:mod:`._maintenance`), or upload anything (:mod:`wking_device.upload`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import orjson

from wking_device.errors import RecordCorrupt
from wking_device.store._files import _CLAIMED_NOTE
from wking_device.store._rows import _CHUNK, _ROW_OVERHEAD, _Rows
from wking_device.store._schema import STATE_PENDING, STATE_REJECTED, OpenedRecord

if TYPE_CHECKING:
    from collections.abc import Iterable

    from wking_device.models import Record

_CLAIMED_SEQS: Final = "SELECT value FROM json_each(?)"
"""A subquery over the claimed rows' ``seq`` values, bound as one JSON array."""
_FLOORS: Final = 16
"""Claim floors kept (one per set of scopes claimed)."""
# A claim is held as one int, ``seq << 32 | bytes counted``: ints are not tracked by the garbage
# collector, tuples are. Two tuples per record made a 2,000-record claim trigger ~5 young
# collections and, in a drain, ~8 % of the uploader's CPU went to collections (a row's bytes
# stay far below 2**32: SQLite caps a value at 10**9 bytes).
_SIZE_BITS: Final = 32
_SIZE_MASK: Final = (1 << _SIZE_BITS) - 1


class _Claims(_Rows):
    """Claims, acknowledgements, releases and rejections (writer thread only).

    A claim writes nothing per record: the writer keeps claimed record ids in memory
    (``self._claims``), claims skip them, an ack deletes them, a release forgets them. A crash
    forgets them too, which is what reopening always did (claims made pending again). Only
    ``rejected`` is a state on disk (it must survive reopening), and the number claimed is
    noted in ``meta`` for read-only readers.
    """

    def _claimable(
        self, n: int, allowed: frozenset[str] | None
    ) -> tuple[list[tuple[int, str, str, int, float, float, bytes]], dict[int, str]]:
        """The oldest ``n`` pending, unexpired, unclaimed rows of the allowed scopes.

        Returns:
            The rows and the key scopes by key id.
        """
        scopes = self.keys.data_key_ids()
        where = "state = ? AND expires_at > ?"
        params: list[Any] = [STATE_PENDING, self._clock()]
        if allowed is not None:
            # a row's key id names its key scope: filter on the ids of the allowed scopes
            key_ids = sorted(key_id for key_id, scope in scopes.items() if scope in allowed)
            if not key_ids:
                return [], scopes
            where += f" AND key_id IN ({','.join('?' * len(key_ids))})"
            params.extend(key_ids)
        # The rows up to the floor are all claimed: start after them rather than read past them
        # (with two batches in flight, the other batch's rows are always first). A row that is
        # claimable below the floor (a released one lowers the floor; SQLite may give a deleted
        # row's number to a new one) is found by a second pass from the start when the first
        # falls short, so nothing waits for long.
        epoch = self._floor_epoch
        floor = self._floors.get(allowed, 0)
        rows = self._claim_query(where, params, n, floor)
        if len(rows) < n and floor:
            rows = self._claim_query(where, params, n, 0)
        if rows:
            with self._floor_lock:
                # not when a writer process's commit lowered the floors meanwhile (its rows
                # may be under this claim's last row)
                if self._floor_epoch == epoch:
                    if len(self._floors) >= _FLOORS:
                        self._floors.clear()
                    self._floors[allowed] = int(rows[-1][0])
        return rows, scopes

    def _claim_query(
        self, where: str, params: list[Any], n: int, floor: int
    ) -> list[tuple[int, str, str, int, float, float, bytes]]:
        claimed = [seq for seq in map(_seq_of, self._claims.values()) if seq > floor]
        if claimed:
            where += f" AND seq NOT IN ({_CLAIMED_SEQS})"
            params = [*params, _seq_json(claimed)]
        # a record past its retention is never handed out, swept or not (DESIGN §4)
        rows: list[tuple[int, str, str, int, float, float, bytes]] = self._conn.execute(
            f"{self._SELECT} WHERE {where} AND seq > ? ORDER BY seq LIMIT ?",
            (*params, floor, n),
        ).fetchall()
        return rows

    def _took(
        self,
        ids: list[str],
        held: list[int],
        bad: list[tuple[int, str]],
        shredded: list[int],
    ) -> None:
        """Hold claimed rows in memory; quarantine or drop the rows that did not open."""
        self._claims.update(zip(ids, held, strict=True))
        self._set_aside_now(bad, shredded)
        self._note_claims()

    def _note_claims(self, *, in_transaction: bool = False) -> None:
        """Write how many records are claimed to ``meta`` (advisory: not synced on its own)."""
        conn = self._conn
        sql = (
            "INSERT INTO meta (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
        )
        if in_transaction:
            conn.execute(sql, (_CLAIMED_NOTE, str(len(self._claims))))
            return
        # a lost note costs nothing (reopening resets it): no fsync of its own, then the
        # connection's own setting again
        synchronous = int(conn.execute("PRAGMA synchronous").fetchone()[0])
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            conn.execute(sql, (_CLAIMED_NOTE, str(len(self._claims))))
        finally:
            conn.execute(f"PRAGMA synchronous = {synchronous}")

    def _claim_sync(self, n: int, allowed: frozenset[str] | None = None) -> list[Record]:
        rows, _ = self._claimable(n, allowed)
        good, bad, shredded = self._open_rows(rows)
        sizes = {row[0]: len(row[6]) + _ROW_OVERHEAD for row in rows}
        self._took(
            [record.record_id for _, record in good],
            [_held(seq, sizes[seq]) for seq, _ in good],
            bad,
            shredded,
        )
        return [record for _, record in good]

    def _claim_opened_sync(
        self, n: int, allowed: frozenset[str] | None = None
    ) -> list[OpenedRecord]:
        rows, scopes = self._claimable(n, allowed)
        opened: list[OpenedRecord] = []
        taken: list[str] = []
        held: list[int] = []
        bad: list[tuple[int, str]] = []
        shredded: list[int] = []
        missing: dict[int, bool] = {}  # key id -> destroyed? (looked up once per call)
        sealers = self._sealers
        split = self._reader.split
        make = tuple.__new__
        for seq, record_id, category, key_id, created_at, expires_at, payload in rows:
            sealer = sealers.get(key_id) if type(key_id) is int else None
            if sealer is None:
                sealer = self._sealer_or_set_aside(seq, key_id, missing, bad, shredded)
                if sealer is None:
                    continue
            try:
                consent_id, policy_version, body = split(
                    sealer.open_row(record_id, category, payload, created_at, expires_at),
                    record_id,
                )
            except RecordCorrupt:
                bad.append((seq, "authentication failed"))
                continue
            scope = scopes.get(key_id, category)
            opened.append(
                make(
                    OpenedRecord,
                    (record_id, category, consent_id, policy_version, body, created_at, scope),
                )
            )
            taken.append(record_id)
            held.append(_held(seq, len(payload) + _ROW_OVERHEAD))
        self._took(taken, held, bad, shredded)
        return opened

    def _ack_sync(self, ids: list[str], *, sync: bool = True) -> int:
        if sync:
            return self._ack_in_transaction(ids)
        # WAL with synchronous=NORMAL: the commit is appended to the log without an fsync
        # (atomic, kept through a process crash; a power loss may undo it, see ack())
        conn = self._conn
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            return self._ack_in_transaction(ids)
        finally:
            conn.execute("PRAGMA synchronous = FULL")

    def _ack_in_transaction(self, ids: list[str]) -> int:
        conn = self._conn
        claims = self._claims
        held = [h for h in map(claims.get, ids) if h is not None]
        recount = False
        conn.execute("BEGIN IMMEDIATE")
        try:
            if len(held) == len(ids):
                # claimed rows: deleted by seq (no id index lookup); the id test keeps a row
                # that SQLite numbered again (the claimed one was deleted meanwhile, e.g.
                # purged) from being deleted in its place
                deleted = conn.execute(
                    f"DELETE FROM records WHERE seq IN ({_CLAIMED_SEQS}) "  # noqa: S608
                    "AND +record_id IN (SELECT value FROM json_each(?))",
                    (_seq_json(map(_seq_of, held)), orjson.dumps(ids).decode("utf-8")),
                ).rowcount
                freed = sum(h & _SIZE_MASK for h in held)  # what the claim read
                recount = deleted != len(ids)
            else:
                deleted, freed = self._delete_by_id(ids)
            for record_id in ids:
                claims.pop(record_id, None)
            self._note_claims(in_transaction=True)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if recount:  # some were gone already, counted when they went
            self._bytes = self._measure()
        else:
            self._bytes -= freed
        return deleted

    def _delete_by_id(self, ids: list[str]) -> tuple[int, int]:
        """Delete rows by record id (inside the caller's transaction); return (rows, bytes)."""
        deleted = 0
        freed = 0
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            # one statement deletes and reports what it freed
            sizes = self._conn.execute(
                f"DELETE FROM records WHERE record_id IN ({marks}) RETURNING length(payload)",  # noqa: S608
                chunk,
            ).fetchall()
            deleted += len(sizes)
            freed += sum(size for (size,) in sizes) + len(sizes) * _ROW_OVERHEAD
        return deleted, freed

    def _release_sync(self, ids: list[str]) -> int:
        """Forget claims: the records are pending again (nothing on disk changes)."""
        seqs = [
            _seq_of(held)
            for held in (self._claims.pop(rid, None) for rid in ids)
            if held is not None
        ]
        if not seqs:
            return 0
        lowest = min(seqs) - 1  # claimable again: the next claims start no later than them
        self._lower_floors(lowest)
        released = self._conn.execute(
            f"SELECT COUNT(*) FROM records WHERE state = ? AND seq IN ({_CLAIMED_SEQS})",  # noqa: S608
            (STATE_PENDING, _seq_json(seqs)),
        ).fetchone()[0]
        self._note_claims()
        return int(released)

    def _reject_sync(self, ids: list[str]) -> int:
        """Set claimed records aside in state ``rejected`` (on disk: it survives reopening)."""
        claimed = [rid for rid in ids if rid in self._claims]
        if not claimed:
            return 0
        conn = self._conn
        moved = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(claimed), _CHUNK):
                chunk = claimed[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                moved += conn.execute(
                    f"UPDATE records SET state = ? WHERE state = ? AND record_id IN ({marks})",  # noqa: S608
                    (STATE_REJECTED, STATE_PENDING, *chunk),
                ).rowcount
            for record_id in claimed:
                del self._claims[record_id]
            self._note_claims(in_transaction=True)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        return moved

    def _claimed_json(self) -> str:
        """The claimed rows' seq values, for :data:`_CLAIMED_SEQS`."""
        return _seq_json(map(_seq_of, self._claims.values()))

    def _forget_gone_claims(self) -> None:
        """Forget the claims of rows deleted other than by an ack (purged, expired).

        SQLite may give a new row the ``seq`` of a deleted one: a claim left behind would count
        that new record as claimed and keep it from being claimed until the stale claim is
        settled. (An ack never deletes a row that is not the claimed one: it checks the id.)
        """
        if not self._claims:
            return
        alive = set(
            self._conn.execute(
                f"SELECT seq, record_id FROM records WHERE seq IN ({_CLAIMED_SEQS})",  # noqa: S608
                (self._claimed_json(),),
            ).fetchall()
        )
        gone = [rid for rid, held in self._claims.items() if (_seq_of(held), rid) not in alive]
        for record_id in gone:
            del self._claims[record_id]
        if gone:
            self._note_claims()

    def _claimed_count(self) -> int:
        """Claimed records that still exist (for stats)."""
        if not self._claims:
            return 0
        return int(
            self._conn.execute(
                f"SELECT COUNT(*) FROM records WHERE state = ? AND seq IN ({_CLAIMED_SEQS})",  # noqa: S608
                (STATE_PENDING, self._claimed_json()),
            ).fetchone()[0]
        )


def _held(seq: int, size: int) -> int:
    """A claim as held in ``_claims``: the row's number and the bytes it counts for."""
    return seq << _SIZE_BITS | size


def _seq_of(held: int) -> int:
    """The row number of a claim held in ``_claims``."""
    return held >> _SIZE_BITS


def _seq_json(seqs: Iterable[int]) -> str:
    """Row numbers as one JSON array parameter (for :data:`_CLAIMED_SEQS`: no bound on count)."""
    return orjson.dumps(list(seqs)).decode("ascii")
