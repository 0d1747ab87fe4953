"""The store's writer thread: FIFO work, the group commit's write, the size cap.

This module owns :class:`_Writer`, the part of :class:`~wking_device.store.RecordStore` that is
its one writer thread: it takes queued work in FIFO order, runs calls (repairing a damaged index
once, mapping SQLite errors) and commits the batches of appends between them in one durable
transaction (permits checked again, records sealed straight into the INSERT's parameters),
evicts by priority under the size cap, settles every caller's future on its loop, and watches
the consent ledger for withdrawals while idle.

It does not accept work from callers or check records and permits (:mod:`._store`), nor hold
the claim and maintenance queries it runs (:mod:`._claims`, :mod:`._maintenance`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
from collections import Counter
from typing import TYPE_CHECKING, Any, Final, Protocol

from wking_device._scrub import scrub_plaintext
from wking_device._store_child import COMMITS_ROW, commits_noted
from wking_device._store_sql import _insert_sql, _padded_shape, _shapes
from wking_device.crypto import Sealer
from wking_device.errors import StorageError, StoreClosed, StoreFull
from wking_device.store._batches import (
    _STOP,
    _Batch,
    _Call,
    _Group,
    _settle,
    _settle_groups,
)
from wking_device.store._files import _translate
from wking_device.store._maintenance import _Maintenance
from wking_device.store._records import DEFAULT_RETENTION
from wking_device.store._rows import _ROW_OVERHEAD
from wking_device.store._schema import STATE_PENDING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

_LOGGER = logging.getLogger(__name__)

_IDLE_WATCH: Final = 0.25
"""Seconds between two looks, while the writer is idle, at the ledger of an attached gate."""
_EVICT_TO: Final = 0.9
"""Eviction frees down to this fraction of the cap, so it runs once per many batches."""


class _Gate(Protocol):
    """What the store needs of :class:`wking_device.consent.ConsentGate`."""

    def subscribe(self, listener: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``listener`` with every revocation; return an unsubscribe function."""

    def states(self) -> Mapping[str, Any]:
        """Every category's state (with a ``reason``, ``"withdrawn"`` after a withdrawal)."""

    def refresh(self) -> bool:
        """Pick up other processes' changes of the ledger."""

    @property
    def ledger(self) -> Any:
        """The ledger (its ``changed_on_disk()`` is read from the writer thread)."""


class _Writer(_Maintenance):
    """The writer thread's loop and the group commit (writer thread only)."""

    if TYPE_CHECKING:  # set by RecordStore.__init__; no run-time annotations
        _queue: queue.SimpleQueue[Any]
        _watched: tuple[_Gate, asyncio.AbstractEventLoop] | None
        _max_batch: int
        _commits: int
        _rotate_after: float
        _watch_failure: str | None

    def _next_item(self) -> Any:
        """The next queued item; while idle, have an attached gate re-read a changed ledger."""
        while True:
            try:
                return self._queue.get(timeout=_IDLE_WATCH)
            except queue.Empty:
                self._watch_ledger()
                watched = self._watched
                if watched is None:
                    continue
                gate, loop = watched
                try:
                    changed = bool(gate.ledger.changed_on_disk())
                except Exception:  # noqa: BLE001 - a stat failing must not stop the writer
                    changed = False
                if changed:
                    with contextlib.suppress(RuntimeError):  # the loop is closed
                        loop.call_soon_threadsafe(_refresh_quietly, gate)

    def _run(self) -> None:
        try:
            while True:
                items = [self._next_item()]
                count = items[0].count if isinstance(items[0], _Batch) else 0
                while count < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    items.append(item)
                    if isinstance(item, _Batch):
                        count += item.count
                try:
                    if self._process(items):
                        return
                except Exception:  # a bug must not kill the writer and leave callers hanging
                    _LOGGER.exception("the record store writer failed on a batch")
                    self._rollback()
                    self._fail(items, "internal error in the record store writer")
        finally:
            self._conn.close()
            self._fail_leftovers()

    def _watch_ledger(self) -> None:
        """Carry out withdrawals the installation's ledger gained since the writer last looked.

        Called by the writer before every batch and while idle, so a withdrawal shreds this
        store's records whether or not the program attached its gate (issue 12): one ``stat``
        of the ledger files when nothing changed.
        """
        if self.readonly:
            return
        ledger = self._ledger
        if ledger is None:
            path = self._ledger_file
            if path is None or not path.exists():
                self._view_stamp = self._ledger_stamp()  # none yet: nothing to refuse by
                return
        elif not ledger.changed_on_disk() and self._ledger_stamp() == self._view_stamp:
            # (the stamps differ when the ledger changed while it was last read: the view is
            # of the newer ledger, the stamp of the older, and no batch could go to a writer
            # process until the ledger changed again)
            return
        try:
            if self._watching:
                self._finish_withdrawals_sync()
            else:  # appends are still checked against the ledger (see _flush)
                self._read_ledger()
        except Exception as exc:
            # one line per distinct failure (looked at every 0.25 s while idle); the traceback
            # only with debug logging
            failure = f"{type(exc).__name__}: {exc}"
            if failure != self._watch_failure:
                self._watch_failure = failure
                _LOGGER.warning("pending withdrawals could not be carried out yet: %s", failure)
                _LOGGER.debug("reading the consent ledger failed", exc_info=True)
        else:
            self._watch_failure = None

    def _process(self, items: list[Any]) -> bool:
        """Run queued work in FIFO order, appends in between grouped; True when told to stop."""
        self._watch_ledger()
        appends: list[_Batch] = []
        for item in items:
            if isinstance(item, _Batch):
                appends.append(item)
                continue
            self._flush(appends)
            appends = []
            if item is _STOP:
                return True  # nothing is queued behind _STOP (see _enqueue)
            self._call(item)
            # the call may have taken long (an export, a sweep): the appends queued behind it
            # are checked against the ledger as it is now, not as it was when the round began
            self._watch_ledger()
        self._flush(appends)
        return False

    def _fail(self, items: list[Any], message: str) -> None:
        for item in items:
            self._fail_item(item, StorageError(message))

    def _fail_item(self, item: Any, exc: BaseException) -> None:
        if isinstance(item, _Batch):
            outcomes: list[tuple[list[asyncio.Future[None]], BaseException | None]] = [
                (group.futures, exc) for group in item.groups.values()
            ]
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone
                item.loop.call_soon_threadsafe(_settle_groups, outcomes)
        elif isinstance(item, _Call) and item.future is not None:
            assert item.loop is not None
            self._post(item.loop, [(item.future, None, exc)])

    def _fail_leftovers(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            self._fail_item(item, StoreClosed("the store is closed"))

    @staticmethod
    def _post(
        loop: asyncio.AbstractEventLoop,
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
    ) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone
            loop.call_soon_threadsafe(_settle, outcomes)

    def _call(self, item: _Call) -> None:
        try:
            result: Any = self._with_repair(item.fn)
            exc: BaseException | None = None
        except sqlite3.Error as error:
            self._rollback()
            result, exc = None, _translate(error, self._directory)
            exc.__cause__ = error
        except Exception as error:  # noqa: BLE001 - handed to the awaiting caller, not swallowed
            self._rollback()
            result, exc = None, error
        if item.future is None:
            if exc is not None:
                _LOGGER.error("background store operation failed: %s", exc)
            return
        assert item.loop is not None
        self._post(item.loop, [(item.future, result, exc)])

    def _with_repair(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn``, repairing a damaged index once.

        A flipped bit in an indexed column makes the table and its index disagree; SQLite then
        reports corruption when the row is touched. The indexes are rebuilt from the table and
        ``fn`` is retried, so the damaged row can be quarantined.
        """
        try:
            return fn()
        except sqlite3.DatabaseError as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code != sqlite3.SQLITE_CORRUPT or self.readonly:
                raise
            self._rollback()
            _LOGGER.warning("the record database has a damaged index; rebuilding it")
            self._conn.execute("REINDEX")
            return fn()

    def _flush(self, batches: list[_Batch]) -> None:
        """Commit queued batches in one transaction; one outcome per permit group."""
        if any(batch.child is not None for batch in batches):
            batches = self._settle_committed(batches)
        if not batches:
            return
        outcomes: dict[
            asyncio.AbstractEventLoop, list[tuple[list[asyncio.Future[None]], BaseException | None]]
        ] = {}
        live: list[_Group] = []
        for batch in batches:
            mine = outcomes.setdefault(batch.loop, [])
            for group in batch.groups.values():
                refused = self._refusal(group)
                if refused is not None:
                    mine.append((group.futures, refused))
                    continue
                live.append(group)
        failure: BaseException | None = None
        if live:
            try:
                self._write(live)
            except StoreFull as exc:
                failure = exc
            except sqlite3.Error as exc:
                self._rollback()
                failure = _translate(exc, self._directory)
                failure.__cause__ = exc
            except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                self._rollback()
                failure = exc
        done = {id(group) for group in live}
        for batch in batches:
            mine = outcomes[batch.loop]
            mine += [(g.futures, failure) for g in batch.groups.values() if id(g) in done]
        for loop, batch_outcomes in outcomes.items():
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone
                loop.call_soon_threadsafe(_settle_groups, batch_outcomes)

    def _settle_committed(self, batches: list[_Batch]) -> list[_Batch]:
        """Settle the batches a writer process committed, then died holding; the others.

        A writer process notes its commits in their own transaction (``COMMITS_ROW``; the next
        process takes nothing until this ran). Such a batch is settled as its acknowledgement
        would have been, never written again: a group whose permit was revoked since has the
        rows that commit inserted for it deleted (not a row of the same id stored before: that
        append was acknowledged), then fails with the permit's error.
        """
        rest, committed = self._commits_of_dead(batches)
        if not committed:
            return rest
        outcomes: dict[
            asyncio.AbstractEventLoop, list[tuple[list[asyncio.Future[None]], BaseException | None]]
        ] = {}
        doomed: list[tuple[list[str], int, int]] = []
        for batch, after, upto in committed:
            mine = outcomes.setdefault(batch.loop, [])
            for group in batch.groups.values():
                refused = self._refusal(group)
                if refused is not None and upto > after:
                    doomed.append(([record.record_id for record in group.records], after, upto))
                mine.append((group.futures, refused))
        self._commits += len({(after, upto) for _, after, upto in committed})
        try:
            if doomed:
                self._drop_added(doomed)
            lowest = min((after for _, after, upto in committed if upto > after), default=None)
            if lowest is not None and self._floors:
                self._lower_floors(lowest)  # as an acknowledgement would have
            self._bytes = self._measure()  # its rows were never counted (nor acknowledged)
        finally:
            for loop, loop_outcomes in outcomes.items():
                with contextlib.suppress(RuntimeError):  # the caller's loop is gone
                    loop.call_soon_threadsafe(_settle_groups, loop_outcomes)
        return rest

    def _drop_added(self, doomed: list[tuple[list[str], int, int]]) -> None:
        """Delete, in one transaction, the rows each ``(ids, after, upto)`` commit inserted.

        Only rows numbered ``after + 1`` to ``upto``: a row of one of ``ids`` outside that range
        was stored by another, acknowledged append (the writer process ignored the record as
        already stored), and is kept.
        """
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for ids, after, upto in doomed:
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    conn.execute(
                        "DELETE FROM records WHERE seq > ? AND seq <= ? "  # noqa: S608
                        f"AND record_id IN ({marks})",
                        [after, upto, *chunk],
                    )
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._forget_gone_claims()

    def _commits_of_dead(
        self, batches: list[_Batch]
    ) -> tuple[list[_Batch], list[tuple[_Batch, int, int]]]:
        """``batches`` split: those to write, and those a dead writer process committed.

        Each committed batch comes with the row numbers its commit inserted: ``after`` (not
        included) to ``upto``.
        """
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (COMMITS_ROW,)).fetchone()
        noted: dict[str, list[tuple[int, int, int, int]]] = {}
        rest: list[_Batch] = []
        committed: list[tuple[_Batch, int, int]] = []
        for batch in batches:
            if batch.child is None:
                rest.append(batch)
                continue
            token, number = batch.child
            batch.child = None
            if token not in noted:
                noted[token] = commits_noted(None if row is None else row[0], token)
            commit = next(
                (
                    (after, upto)
                    for first, last, after, upto in noted[token]
                    if first <= number <= last
                ),
                None,
            )
            if commit is None:
                rest.append(batch)  # not committed: written now, as any batch
            else:
                committed.append((batch, *commit))
        return rest, committed

    def _sealer(self, scope: str, count: int, now: float) -> Sealer:
        dek = self.keys.current_data_key(scope, rotate_after=self._rotate_after, now=now)
        self._child_keys[scope] = dek  # a writer process may seal with it from now on
        sealer = self._sealers.get(dek.key_id)
        if sealer is None:
            sealer = self._sealers[dek.key_id] = Sealer(dek.key_id, dek.key)
        if sealer.remaining() < count:
            self._reserve(sealer)
        return sealer

    def _write(self, live: list[_Group]) -> None:
        now = self._clock()
        counts: Counter[str] = Counter()
        for group in live:
            counts.update(group.scopes)
        sealers = {scope: self._sealer(scope, count, now) for scope, count in counts.items()}
        retention = self._retention
        # The parameters of the multi-row INSERT are built while sealing, in one pass.
        # retention runs from the record's time, or from now if a caller dated it in the future
        params: list[Any] = []
        extend = params.extend
        size = 0
        for group in live:
            for record, plaintext, scope in zip(
                group.records, group.plaintexts, group.scopes, strict=True
            ):
                sealer = sealers[scope]
                record_id, category = record.record_id, record.category
                created = float(record.created_at) + 0.0
                expires = (min(created, now) + retention.get(category, DEFAULT_RETENTION)) + 0.0
                payload = sealer.seal(
                    record_id,
                    category,
                    scrub_plaintext(plaintext, category),  # appends leave the scrub to the seal
                    created_at=created,
                    expires_at=expires,
                )
                size += len(payload)
                extend((record_id, category, sealer.key_id, created, expires, payload))
        rows = len(params) // 6
        size += _ROW_OVERHEAD * rows
        conn = self._conn
        before = conn.total_changes
        freed = 0
        self._commits += 1
        # batches a writer process holds are committed after this one: room is kept for them
        appender = self._appender
        stored = self._stored_bytes + (0 if appender is None else appender.held_bytes)
        shape = _padded_shape(rows)
        if shape and stored + size <= self.max_bytes:
            # One statement in autocommit mode is one durable transaction (WAL, FULL): the
            # whole group commit is a single sqlite3 call, so the writer gives up and re-takes
            # the GIL once per commit (each re-take can wait for the event loop's thread for up
            # to the interpreter's switch interval). Rounded up to a prepared shape with copies
            # of the last row: its record id is taken by then, so INSERT OR IGNORE skips them.
            if shape > rows:
                params += params[-6:] * (shape - rows)
            last = conn.execute(_insert_sql(shape), params).lastrowid
            self._account(conn.total_changes - before, rows, size, freed)
            self._numbered_from(last, rows)
            return
        shapes = _shapes(rows)
        conn.execute("BEGIN IMMEDIATE")
        try:
            if stored + size > self.max_bytes:
                top = max(
                    self._priority.get(category, 0)
                    for group in live
                    for category in {r.category for r in group.records}
                )
                freed = self._evict(
                    stored + size - int(self.max_bytes * _EVICT_TO),
                    top,
                    held=stored - self._stored_bytes,
                )
            before = conn.total_changes
            start = 0
            last = None
            for count in shapes:
                last = conn.execute(_insert_sql(count), params[start : start + 6 * count]).lastrowid
                start += 6 * count
            inserted = conn.total_changes - before
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._account(inserted, rows, size, freed)
        self._numbered_from(last, rows)

    def _numbered_from(self, last: int | None, rows: int) -> None:
        """Keep claims oldest first after an insert of up to ``rows`` rows, the last ``last``.

        SQLite numbers a new row one past the highest number in the table, so once the newest
        rows were deleted (acked, purged, swept) new rows can take numbers at or below a claim
        floor (a claim starts past its floor): the floors are lowered under the new rows.
        """
        if not self._floors or last is None:
            return
        self._lower_floors(last - rows)  # every new row is numbered above it (consecutive)

    def _account(self, inserted: int, offered: int, size: int, freed: int) -> None:
        if inserted != offered:
            # duplicates were ignored (idempotent append): recount what is really kept
            self._bytes = self._measure()
        else:
            self._bytes += size - freed

    def _evict(self, need: int, top_priority: int, *, held: int = 0) -> int:
        """Delete pending records, lowest priority and oldest first, until ``need`` bytes are free.

        Runs inside the caller's transaction. Raises StoreFull (the caller rolls back) when
        records of priority up to ``top_priority`` cannot free enough, not counting ``held``
        (bytes a writer process holds, in ``need`` but not in the table yet to evict).
        """
        conn = self._conn
        categories = sorted(
            (self._priority.get(category, 0), category)
            for (category,) in conn.execute("SELECT DISTINCT category FROM records")
        )
        freed = 0
        evicted = 0
        for rank, category in categories:
            if rank > top_priority or freed >= need:
                break
            while freed < need:
                rows = conn.execute(
                    "SELECT seq, length(payload) FROM records "
                    "WHERE category = ? AND state = ? "
                    "AND seq NOT IN (SELECT value FROM json_each(?)) "  # never a claimed record
                    "ORDER BY seq LIMIT 1000",
                    (category, STATE_PENDING, self._claimed_json()),
                ).fetchall()
                if not rows:
                    break
                last = rows[-1][0]
                for seq, length in rows:
                    freed += length + _ROW_OVERHEAD
                    evicted += 1
                    if freed >= need:
                        last = seq
                        break
                conn.execute(
                    "DELETE FROM records WHERE category = ? AND state = ? AND seq <= ? "
                    "AND seq NOT IN (SELECT value FROM json_each(?))",
                    (category, STATE_PENDING, last, self._claimed_json()),
                )
        if freed < need - held:
            raise StoreFull(
                f"the store reached its size cap ({self.max_bytes} bytes) and nothing of equal or "
                "lower priority is left to evict"
            )
        conn.execute(
            "UPDATE meta SET value = value + ? WHERE name = 'evicted'",
            (evicted,),
        )
        _LOGGER.warning("size cap reached: evicted %d records", evicted)
        return freed


def _refresh_quietly(gate: _Gate) -> None:
    """Have a gate re-read its ledger (posted to its loop by an idle writer)."""
    try:
        gate.refresh()
    except Exception:
        _LOGGER.debug("the attached gate could not re-read its ledger", exc_info=True)
