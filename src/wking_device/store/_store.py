"""The encrypted record store's public face: :class:`RecordStore` and :func:`open_store`.

This module owns what callers touch: opening the store (:func:`open_store`: key store, writer
lock, checked and migrated database, pending withdrawals and re-sealing queued first), the
``async`` calls that queue work for the one writer thread and await its result, and the append
path up to the queue: consent permits checked (sealed by this installation's gate), records
checked, and each record joined to its loop's open batch, so appends that arrive together are
committed in one transaction and each caller's ``await`` returns only after that commit. It
also attaches a consent gate, so a withdrawal it reports crypto-shreds at once.

The work itself runs elsewhere, on the writer thread: the group commit, size cap and ledger
watch (:mod:`._writer`), claims (:mod:`._claims`), purge, withdrawals, retention, export and
counts (:mod:`._maintenance`), shared row work (:mod:`._rows`); the SQLite file and its lock are
:mod:`._files`. It does not decide consent (:mod:`wking_device.consent` issues permits), upload,
or know the retention policy of a category (passed in as ``retention``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from wking_device._running import running_loop
from wking_device._subscription import Subscription
from wking_device.config import Paths, Settings, load_settings, warn_loose_permissions
from wking_device.consent import (
    ConsentGate,
    Ledger,
    Permit,
    Revocation,
    issued_by,
    ledger_path,
    permit_key,
)
from wking_device.crypto import LEDGER_SECRET, DataKey, KekBackend, KeyStore, Sealer, open_key_store
from wking_device.errors import (
    ConsentError,
    ForeignPermit,
    StorageError,
    StoreClosed,
    StoreFull,
    StoreIntegrityError,
    StoreNotFound,
    UsageError,
)
from wking_device.models import Record
from wking_device.policy import CATALOG
from wking_device.store import _arguments
from wking_device.store._appender import _Appender
from wking_device.store._batches import (
    _CHILD_HAND_OVER_ROWS,
    _HAND_OVER_ROWS,
    _STOP,
    _Batch,
    _Call,
    _Group,
    _settle_groups,
)
from wking_device.store._files import (
    _HELD,
    _HELD_LOCK,
    DB_FILE,
    _connect,
    _held_key,
    _lock,
    _prepare,
    _translate,
)
from wking_device.store._maintenance import StoreStats, SweepResult
from wking_device.store._records import (
    _CATALOG_IDS,
    DEFAULT_PRIORITY,
    DEFAULT_RETENTION,
    _categories,
    _check_record,
    catalog_retention,
    key_scope,
)
from wking_device.store._rows import _MEASURE, _ROW_OVERHEAD
from wking_device.store._schema import OpenedRecord, PlaintextReader, serialize_body
from wking_device.store._writer import _Gate, _Writer

__all__ = [
    "RecordStore",
    "open_store",
]

_LOGGER = logging.getLogger(__name__)


_ENVELOPE_OVERHEAD: Final = 1 + 12 + 16
"""Bytes a sealed payload has beside its plaintext (version, nonce, tag), for the size cap."""

_TRUSTED_PERMITS: Final = 256
"""Permits remembered as checked (by identity; permits are immutable)."""


class RecordStore(_Writer):
    """The encrypted local record store. Build it with :func:`open_store`.

    All database work runs on one writer thread in FIFO order; the ``async`` methods queue work
    and await its result, so they never block the event loop. Usable as an async context manager.

    Args:
        conn: An open connection (autocommit mode) to the migrated database.
        keys: The key store.
        directory: The data directory (for disk-space diagnostics).
        max_bytes: The size cap.
        rotate_after: Seconds before a category's data key is replaced by a new epoch.
        retention: Seconds records of a category are kept.
        priority: Eviction order (lower first).
        clock: UTC time source.
        readonly: Refuse changes (for status and export while an agent runs).
        lock_fd: The file descriptor holding the writer lock (closed on close).
        max_batch: Most records committed in one transaction.
        ledger_file: The installation's consent ledger, whose withdrawals the store carries out
            (:meth:`finish_withdrawals`).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        keys: KeyStore,
        *,
        directory: Path,
        max_bytes: int,
        rotate_after: float,
        retention: Mapping[str, float],
        priority: Mapping[str, int],
        clock: Callable[[], float],
        readonly: bool,
        lock_fd: int | None,
        max_batch: int = 2048,
        ledger_file: Path | None = None,
        permit_key: bytes | None = None,
        held: str | None = None,
        writer_process: bool = False,
    ) -> None:
        self._held = held
        self._watching = True
        """Whether the writer carries out new withdrawals on its own (see ``_watch_ledger``)."""
        self.keys = keys
        self.readonly = readonly
        self.max_bytes = max_bytes
        self._conn = conn
        self._directory = directory
        self._rotate_after = rotate_after
        self._retention = dict(retention)
        self._priority = dict(priority)
        self._clock = clock
        self._lock_fd = lock_fd
        self._max_batch = max_batch
        self._commits = 0
        """Group commits of appends so far (read by benchmarks/ingest.py for rows per commit)."""
        self._permit_key = permit_key
        self._trusted: dict[int, Permit] = {}
        self._reader = PlaintextReader()
        self._claims: dict[str, int] = {}
        """Claimed records, record id -> ``seq << 32 | bytes counted for the cap`` (one int, not a
        tuple: see :mod:`._claims`); writer thread only."""
        self._floors: dict[frozenset[str] | None, int] = {}
        """Per set of claimed scopes, a seq up to which every claimable row is claimed."""
        self._sealers: dict[int, Sealer] = {}
        self._ledger_file = ledger_file
        self._ledger: Ledger | None = None
        # What the ledger said of grants when the writer thread last read it (appends are
        # checked against it), and the ledger file's stamp then (see ``_ledger_stamp``).
        self._consent_view = self._view_stamp = None
        self._watch_failure: str | None = None  # the ledger's failure last logged (writer)
        self._watched: tuple[_Gate, asyncio.AbstractEventLoop] | None = None
        self._child_added = 0
        """Bytes a writer process added, counted on its event loop (see ``_Rows._measure``)."""
        self._bytes = int(conn.execute(_MEASURE).fetchone()[0])
        self._floor_lock = threading.Lock()
        self._floor_epoch = 0
        self._child_keys: dict[str, DataKey] = {}
        """Per key scope, the data key the writer thread sealed with last: a writer process
        seals with it too until it is due for rotation (the writer thread then makes the next)."""
        self._appender = (
            _Appender(
                directory / DB_FILE,
                requeue=self._queue_put,
                committed=self._committed,
                revoked=self._revoked,
            )
            if writer_process and not readonly
            else None
        )
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._stopped = False
        """Whether the writer's stop is queued (once, by whichever ``close`` gets there)."""
        self._enqueue_lock = threading.Lock()
        self._open: _Batch | None = None
        """The batch appends join until it is queued (guarded by ``_enqueue_lock``)."""
        self._hand_over_rows = min(
            _CHILD_HAND_OVER_ROWS if self._appender is not None else _HAND_OVER_ROWS, max_batch
        )
        self._thread = threading.Thread(target=self._run, name="wking-store-writer", daemon=True)
        self._thread.start()
        if self._appender is not None:
            self._appender.start()  # ready by the first batches, as a rule

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def level(self) -> str:
        """The key-store level in use (for ``wking doctor``)."""
        return self.keys.level

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Finish queued work, stop the writer and close the database (idempotent, blocking).

        A close interrupted (Ctrl-C while it waits) is finished by the next call: every step
        is taken once, whichever call gets to it.
        """
        with self._enqueue_lock:
            if not self._closed:
                self._closed = True
                self._queue_open()
            if self._appender is None and not self._stopped:
                self._queue.put(_STOP)
                self._stopped = True
        if self._appender is not None:
            # the process commits what it received; what it did not acknowledge is queued for
            # the writer thread ahead of the stop (nothing joins the queue once _closed is set)
            self._appender.close()
            with self._enqueue_lock:
                if not self._stopped:
                    self._queue.put(_STOP)
                    self._stopped = True
        self._thread.join()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._held is not None:
            with _HELD_LOCK:
                _HELD.discard(self._held)
            self._held = None

    async def aclose(self) -> None:
        """Close without blocking the event loop."""
        await asyncio.to_thread(self.close)

    async def __aenter__(self) -> RecordStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _check_open(self, *, write: bool = False) -> None:
        if self._closed:
            raise StoreClosed("the record store is closed")
        if write and self.readonly:
            raise UsageError("the record store was opened read-only")

    def _enqueue(self, item: _Call, *, fence: bool = False) -> None:
        """Queue a call for the writer thread, behind the appends made before it.

        ``fence``: for a call that destroys data keys (purge, withdrawals), appends made after
        it also run after it, as the writer thread alone runs them: a writer process takes no
        batch until the call has run (else it could commit records under a key the call then
        shreds, after acknowledging them).
        """
        # The check and the put are one step, so nothing is ever queued behind _STOP.
        with self._enqueue_lock:
            if self._closed:
                raise StoreClosed("the record store is closed")
            self._queue_open()  # appends made before this call run before it (FIFO)
            appender = self._appender if fence else None
            if appender is not None:
                appender.hold()  # under the lock: no batch goes to the process from now on
            self._queue.put(item)
            if appender is not None:
                self._queue.put(_Call(appender.resume))

    def _queue_open(self) -> None:
        """Queue the open batch, if any (the caller holds ``_enqueue_lock``)."""
        batch = self._open
        if batch is not None:
            self._open = None
            self._queue.put(batch)

    def _hand_over(self, batch: _Batch) -> None:
        """Queue ``batch`` once its loop ran the tasks woken with it (from ``call_soon``)."""
        with self._enqueue_lock:
            if self._open is batch:
                self._open = None
                self._dispatch(batch)

    def _dispatch(self, batch: _Batch) -> None:
        """Queue a closed batch: to the writer process if it takes it, else the writer thread."""
        try:
            sent = self._to_child(batch)
        except Exception:  # a bug must not lose appends: the writer thread takes the batch
            _LOGGER.exception("a batch could not go to the store's writer process")
            sent = False
        if not sent:
            self._queue.put(batch)

    def _queue_put(self, item: _Batch | _Call) -> None:
        """Queue a batch a writer process did not acknowledge (or a call), for the writer thread."""
        self._queue.put(item)

    def _to_child(self, batch: _Batch) -> bool:
        """Send a batch to the writer process (its loop's thread, ``_enqueue_lock`` held).

        Returns False when the writer thread must take it: no process for this loop, a scope
        without a data key in force the process may use (the writer thread makes or rotates
        keys), the size cap within reach (the writer thread evicts), or a consent ledger that
        changed since the writer thread read it. The permits, and the ledger as last read, are
        checked again first, as the writer thread does right before writing: a group whose
        permit was revoked or whose grant lapsed fails here.
        """
        appender = self._appender
        if appender is None or not appender.prepare(batch.loop):
            return False
        if self._ledger_file is not None and self._ledger_stamp() != self._view_stamp:
            # the ledger changed since the writer thread read it (another process withdrew?):
            # the writer thread reads it again before it writes this batch
            return False
        now = self._clock()
        keys = self._child_keys  # the writer thread may change it meanwhile: read once a scope
        rotate_after = self._rotate_after
        chosen: dict[str, int] = {}
        for group in batch.groups.values():
            for scope in set(group.scopes) - chosen.keys():
                dek = keys.get(scope)
                if dek is None or dek.created_at + rotate_after <= now:
                    # a key made before (this store opened again): no need to wait for the
                    # writer thread; a new key or epoch is made there (it writes the key store)
                    dek = self.keys.data_key_in_force(scope, rotate_after=rotate_after, now=now)
                    if dek is None:
                        return False
                    keys[scope] = dek
                chosen[scope] = dek.key_id
        retention = self._retention
        rows: list[tuple[Any, ...]] = []
        append = rows.append
        size = 0
        for key, group in list(batch.groups.items()):
            refused = self._refusal(group)
            if refused is not None:
                del batch.groups[key]
                _settle_groups([(group.futures, refused)])
                continue
            for record, plaintext, scope in zip(
                group.records, group.plaintexts, group.scopes, strict=True
            ):
                category = record.category
                created = float(record.created_at) + 0.0
                expires = (min(created, now) + retention.get(category, DEFAULT_RETENTION)) + 0.0
                size += len(plaintext)
                key_id = chosen[scope]
                append((record.record_id, category, key_id, created, expires, plaintext))
        if not rows:
            return True
        size += (_ENVELOPE_OVERHEAD + _ROW_OVERHEAD) * len(rows)
        if self._stored_bytes + appender.held_bytes + size > self.max_bytes:
            return False
        return appender.send(
            batch, rows=rows, key_ids=set(chosen.values()), live_key=self._live_key, size=size
        )

    def _live_key(self, key_id: int) -> bytes | None:
        """A data key's bytes, or None once it is destroyed (asked while sending a batch)."""
        dek = self.keys.data_key(key_id)
        return None if dek is None else dek.key

    def _committed(self, last: int, offered: int, inserted: int, size: int) -> None:
        """Account a writer process's commit (on its event loop, before its callers resume)."""
        self._commits += 1
        if size >= 0:
            self._child_added += size
        else:  # duplicates were ignored: measured again on the writer thread
            # put directly (not _enqueue): this runs under the appender's lock, which the loop
            # takes inside _enqueue_lock; after a stop, the call is dropped with the leftovers
            self._queue.put(_Call(self._remeasure))
        if self._floors and inserted:
            self._lower_floors(last - offered)

    def _remeasure(self) -> None:
        self._bytes = self._measure()

    def _revoked(self, batch: _Batch, group: _Group, error: ConsentError) -> None:
        """A group a writer process committed, its permit revoked by its acknowledgement.

        The writer thread deletes the rows that commit added for it, then fails its callers
        with ``error`` (put directly, as in ``_committed``; a close queues it before its stop).
        """
        loop = batch.loop
        call = functools.partial(
            self._drop_revoked_sync, loop, group, error, batch.after, batch.upto
        )
        self._queue.put(_Call(call))
        if self._closed:  # the loop may get here after the stop: its callers must not wait
            with contextlib.suppress(RuntimeError):
                outcome: list[tuple[list[asyncio.Future[None]], BaseException | None]]
                outcome = [(group.futures, error)]
                loop.call_soon_threadsafe(_settle_groups, outcome)

    def _drop_revoked_sync(
        self,
        loop: asyncio.AbstractEventLoop,
        group: _Group,
        error: ConsentError,
        after: int,
        upto: int,
    ) -> None:
        try:
            # only the rows its commit added: a record the child ignored as already stored
            # keeps its earlier row (that append was acknowledged)
            self._drop_added([([record.record_id for record in group.records], after, upto)])
            self._bytes = self._measure()
        finally:
            with contextlib.suppress(RuntimeError):  # the caller's loop is gone
                outcome: list[tuple[list[asyncio.Future[None]], BaseException | None]]
                outcome = [(group.futures, error)]
                loop.call_soon_threadsafe(_settle_groups, outcome)

    def _join(  # noqa: PLR0917 - called once per append: positional arguments cost less
        self,
        loop: asyncio.AbstractEventLoop,
        permit: Permit,
        needed: Iterable[str],
        records: Sequence[Record],
        plaintexts: Sequence[bytes],
        scopes: Sequence[str],
        future: asyncio.Future[None],
    ) -> None:
        """Add checked records to the open batch of ``loop`` (a new batch when there is none).

        A new batch is queued by a ``call_soon`` callback: every producer the loop already
        resumed (all those one commit acknowledged) joins it first. That is the group commit's
        linger, bounded by one turn of the loop rather than by a timer. (Positional: this runs
        once per append.)
        """
        with self._enqueue_lock:
            if self._closed:
                raise StoreClosed("the record store is closed")
            batch = self._open
            if batch is None or batch.loop is not loop or batch.count >= self._max_batch:
                self._queue_open()
                batch = self._open = _Batch(loop)
                loop.call_soon(self._hand_over, batch)
            group = batch.groups.get(id(permit))
            if group is None or group.permit is not permit:
                group = batch.groups[id(permit)] = _Group(permit, set(), [], [], [], [])
            group.needed.update(needed)
            group.records += records
            group.plaintexts += plaintexts
            group.scopes += scopes
            group.futures.append(future)
            batch.count += len(records)
            if batch.count >= self._hand_over_rows:
                # a long turn of the loop (many producers): the writer starts on what it has
                # while the loop goes on filling the next batch
                self._open = None
                self._dispatch(batch)

    async def _submit(
        self, fn: Callable[[], Any], *, write: bool = True, fence: bool = False
    ) -> Any:
        self._check_open(write=write)
        loop = running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._enqueue(_Call(fn, future, loop), fence=fence)
        return await future

    # -- public API ----------------------------------------------------------------------------

    async def append(self, records: Sequence[Record], permit: Permit) -> None:
        """Store records; return only after they are durably committed.

        Args:
            records: The records (any categories the permit covers).
            permit: The consent permit they were collected under.

        Raises:
            PermitRevoked: The permit was revoked (checked now and again right before writing).
            ConsentRequired: The permit does not cover a record's category.
            StoreFull: The disk is full, or the cap is reached with nothing evictable; nothing
                stored before was lost.
            ForeignPermit: The permit was not issued by this installation's consent gate (a
                look-alike object, or a permit of another installation).
            UsageError: ``records`` is not a list (or other sequence) of :class:`Record`, a
                record's body is not a dict or not JSON-serialisable, its category is unknown,
                its id is not an id (1 to 64 letters, digits, ``-`` or ``_``, not MAC-shaped)
                or its ``created_at`` is not a finite number.
            StoreClosed: The store was closed.
        """
        # Every check below runs for every call; the common case takes the cheap branch of each.
        if self._closed or self.readonly:
            self._check_open(write=True)
        if self._trusted.get(id(permit), False) is not permit:
            self._check_permit(permit)
        if type(records) is not list and (
            not isinstance(records, Sequence) or isinstance(records, str | bytes)
        ):
            raise UsageError(
                f"records must be a list of Record objects, not {type(records).__name__}",
                remedy="append([record], permit) for one record",
            )
        if len(records) == 1:
            # one record (a producer per event): the same checks, without the lists and sets
            # of the general path (≈ 1.3 µs of the loop's ≈ 15 µs per record at 100 producers)
            record = records[0]
            _check_record(record)
            scope = key_scope(record)
            scopes: Sequence[str] = (scope,)
            if scope in _CATALOG_IDS:
                permit.require(scope)
                needed: Iterable[str] = scopes  # a catalog category is its own key scope
            else:
                needed = self._require(permit, [scope])
            plaintexts: Sequence[bytes] = (serialize_body(record),)
        elif not records:
            return
        else:
            for record in records:
                _check_record(record)
            scopes = [key_scope(record) for record in records]
            needed = self._require(permit, scopes)
            plaintexts = [serialize_body(record) for record in records]
        loop = running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._join(loop, permit, needed, records, plaintexts, scopes, future)
        await future

    @staticmethod
    def _require(permit: Permit, scopes: list[str]) -> set[str]:
        """The categories ``scopes`` need, each checked against ``permit`` now."""
        needed = _categories(scopes)
        if not needed <= _CATALOG_IDS:
            unknown = needed - _CATALOG_IDS
            raise UsageError(
                f"unknown data categories: {', '.join(sorted(map(str, unknown)))}",
                remedy=f"use one of {', '.join(CATALOG)}",
            )
        for category in needed:
            permit.require(category)
        return needed

    def _check_permit(self, permit: Permit) -> None:
        """Refuse anything but a permit sealed by this installation's gate (cached per object)."""
        if self._trusted.get(id(permit), False) is permit:
            return
        if self._permit_key is None or not issued_by(permit, self._permit_key):
            raise ForeignPermit(
                "the permit was not issued by this installation's consent gate",
                remedy="ask the ConsentGate of this installation (same home) for a permit",
            )
        if len(self._trusted) >= _TRUSTED_PERMITS:
            self._trusted.clear()
        self._trusted[id(permit)] = permit

    async def claim(self, n: int, *, scopes: Iterable[str] | None = None) -> list[Record]:
        """Claim up to ``n`` pending records (oldest first) for upload, decrypted.

        A claimed record is not claimed again until released, and becomes pending again when the
        store is reopened (a crash between claim and ack never loses it). Records that fail
        authentication are quarantined instead of returned.

        Args:
            n: The most records to claim.
            scopes: Claim only records of these key scopes (:func:`key_scope`: the category,
                or ``"<category>+mac_addresses"`` for a record holding MAC addresses). The
                uploader passes what it may send now; the other records stay pending.
        """
        allowed = _scopes(scopes)
        if _arguments.count(n) <= 0:
            return []
        result: list[Record] = await self._submit(functools.partial(self._claim_sync, n, allowed))
        return result

    async def claim_opened(
        self, n: int, *, scopes: Iterable[str] | None = None
    ) -> list[OpenedRecord]:
        """:meth:`claim`, returning each record's columns and body text instead of a ``Record``.

        The uploader's path: it encodes straight from the body's JSON text, cut out of the
        plaintext (:class:`~wking_device.store.PlaintextReader`) with no parse and no object
        built per record. Claims, releases and acknowledgements work the same for both.
        """
        allowed = _scopes(scopes)
        if _arguments.count(n) <= 0:
            return []
        result: list[OpenedRecord] = await self._submit(
            functools.partial(self._claim_opened_sync, n, allowed)
        )
        return result

    async def reject(self, record_ids: Iterable[str]) -> int:
        """Set claimed records aside as rejected by the collector; returns how many.

        They are kept (encrypted) for inspection and export, counted in :meth:`stats`, never
        claimed again, and deleted by retention, withdrawal or erasure like any other record.
        """
        ids = _record_ids(record_ids)
        if not ids:
            return 0
        result: int = await self._submit(functools.partial(self._reject_sync, ids))
        return result

    async def ack(self, record_ids: Iterable[str], *, sync: bool = True) -> int:
        """Delete records the collector acknowledged; returns how many were deleted.

        Args:
            record_ids: The records to delete.
            sync: Whether the delete's commit waits for the disk (``fsync``). The uploader
                passes ``False`` for records a de-duplicating collector stored: the commit is
                then atomic and survives a crash of the process, but a power loss may undo it,
                and those records are pending again and re-sent (never lost, never sent twice
                into the collector's store). The next synced commit (any append) makes it
                durable too.
        """
        ids = _record_ids(record_ids)
        if not ids:
            return 0
        result: int = await self._submit(functools.partial(self._ack_sync, ids, sync=sync))
        return result

    async def release(self, record_ids: Iterable[str]) -> int:
        """Make claimed records pending again (upload failed); returns how many."""
        ids = _record_ids(record_ids)
        if not ids:
            return 0
        result: int = await self._submit(functools.partial(self._release_sync, ids))
        return result

    async def purge(self, category: str) -> int:
        """Crypto-shred a category: destroy its data keys, retire the KEK, delete its rows.

        Returns:
            The number of records deleted.
        """
        _arguments.category(category)
        result: int = await self._submit(functools.partial(self._purge_sync, category), fence=True)
        return result

    async def finish_withdrawals(self) -> dict[str, int]:
        """Crypto-shred every category whose withdrawal is in the ledger but not carried out yet.

        The store records (in its ``meta`` table) the last ledger withdrawal it carried out, so
        this is idempotent and crash-safe: a process killed between recording a withdrawal and
        shredding leaves it pending, and the next store opened for writing finishes it
        (:func:`open_store` does this by default). A category withdrawn and granted again before
        any process carried out the withdrawal is shredded whole: records under the new grant
        cannot be told apart without decrypting them, and keeping withdrawn data is the worse
        error.

        Returns:
            Records deleted, per category shredded now (empty when nothing was pending).
        """
        result: dict[str, int] = await self._submit(self._finish_withdrawals_sync, fence=True)
        return result

    async def sweep(self, now: float | None = None) -> SweepResult:
        """Delete records past retention and destroy data keys no record needs any more.

        Then authenticate every record left, a chunk per queued step (appends run in between):
        a row whose bound columns were edited — an ``expires_at`` moved into the future to keep
        it past its retention — is quarantined and counted, not kept. Quarantined rows are
        deleted once the longest retention has passed since they were set aside.

        Args:
            now: The time to sweep at (UTC seconds; default: the store's clock).

        Raises:
            UsageError: ``now`` is not a finite number.
        """
        now = _arguments.instant(now, "now")
        result: SweepResult = await self._submit(functools.partial(self._sweep_sync, now))
        quarantined = 0
        after: int | None = 0
        while after is not None:
            found, after = await self._submit(functools.partial(self._verify_sync, after))
            quarantined += found
        return dataclasses.replace(result, quarantined=quarantined)

    async def export(self, categories: Iterable[str] | None = None) -> list[Record]:
        """Decrypt every record (or those of some categories) for the owner, oldest first."""
        listed = _arguments.names(categories, "categories", "store.export(['operation_logs'])")
        wanted = None if listed is None else sorted(set(listed))
        result: list[Record] = await self._submit(
            functools.partial(self._export_sync, wanted), write=False
        )
        return result

    async def stats(self) -> StoreStats:
        """Return counts for ``wking data status``."""
        result: StoreStats = await self._submit(self._stats_sync, write=False)
        return result

    def attach(self, gate: ConsentGate) -> Subscription:
        """Crypto-shred a category as soon as the gate reports its withdrawal (optional).

        Not needed for withdrawal to shred: a store open for writing watches its installation's
        ledger itself (before every batch of work, and while idle) and carries out every
        withdrawal recorded there. Attaching adds the gate's in-process revocations as a
        second, synchronous trigger and has the idle writer refresh the gate.

        Categories that are withdrawn already when the store is attached are purged too: a
        withdrawal made while another process held the store (which then stopped before it saw
        the withdrawal), or one whose purge a crash interrupted, is carried out now.

        Args:
            gate: The consent gate; revocations with reason ``"withdrawn"`` purge their
                categories (queued behind appends already accepted, so those are shredded too).

        Returns:
            A :class:`~wking_device.Subscription` that detaches the store from the gate (call
            it, ``close()`` it or leave its ``with`` block).
        """

        def purge(categories: Iterable[str]) -> None:
            if self._closed or self.readonly:
                return
            with contextlib.suppress(StoreClosed):
                for category in sorted(categories):
                    call = _Call(functools.partial(self._purge_sync, category))
                    self._enqueue(call, fence=True)
                # and record them as carried out (anything else pending goes too)
                self._enqueue(_Call(self._finish_withdrawals_sync), fence=True)

        def listener(revocation: Revocation) -> None:
            if revocation.reason == "withdrawn":
                purge(revocation.categories)

        unsubscribe = gate.subscribe(listener)
        purge(
            category
            for category, state in gate.states().items()
            if getattr(state, "reason", None) == "withdrawn"
        )
        # While the writer is idle it looks at the gate's ledger file and has the gate re-read
        # it on its loop: an idle program holding the store shreds another process's
        # withdrawal promptly, without calling refresh() itself.
        with contextlib.suppress(RuntimeError):
            self._watched = (gate, asyncio.get_running_loop())

        def detach() -> None:
            unsubscribe()
            if self._watched is not None and self._watched[0] is gate:
                self._watched = None

        return Subscription(detach)


def _record_ids(record_ids: Iterable[str]) -> list[str]:
    example = "store.ack([record.record_id])"
    return _arguments.names(record_ids, "record_ids", example, optional=False) or []


def _scopes(scopes: Iterable[str] | None) -> frozenset[str] | None:
    listed = _arguments.names(scopes, "scopes", "store.claim(n, scopes=['operation_logs'])")
    return None if listed is None else frozenset(listed)


def open_store(  # noqa: PLR0912 - one linear open sequence with its cleanup paths
    paths: Paths,
    settings: Settings | None = None,
    *,
    keys: KeyStore | None = None,
    key_backend: KekBackend | None = None,
    readonly: bool = False,
    retention: Mapping[str, float] | None = None,
    priority: Mapping[str, int] | None = None,
    clock: Callable[[], float] = time.time,
    check: bool = True,
    max_bytes: int | None = None,
    max_batch: int = 2048,
    finish_withdrawals: bool = True,
    writer_process: bool | None = None,
) -> RecordStore:
    """Open (or create) the record store of an installation.

    Args:
        paths: The installation's paths.
        settings: Its settings (size cap, DEK rotation); read from the config file by default.
        keys: An open key store; by default :func:`~wking_device.crypto.open_key_store` is
            called, creating keys only when there is no database yet.
        key_backend: Where the KEK lives, when not the default ladder (passed to the key store).
        readonly: Open for status and export only (works while an agent holds the store).
        retention: Seconds records of each category are kept (default: the policy catalog's
            ``retention_days``; :data:`DEFAULT_RETENTION` for categories it does not name).
        priority: Eviction order under the size cap (lower first; default
            :data:`DEFAULT_PRIORITY`).
        clock: UTC time source.
        check: Run SQLite's ``quick_check`` on open.
        max_bytes: Override the size cap of the settings.
        max_batch: Most records per group commit (an int, at least 1).
        finish_withdrawals: Carry out withdrawals recorded in the ledger that no process
            carried out yet (queued first, before anything else); pass ``False`` to call
            :meth:`RecordStore.finish_withdrawals` yourself and see what it did (the store
            then watches the ledger for new withdrawals only after that call).
        writer_process: Have a child process seal and commit the appends of the event loop
            that appends first (started at its first append), so the loop fills the next
            batch while the child commits one: about 1.5x the appends per second of the writer
            thread with many concurrent producers where the machine has a spare core, for one
            more process (about 40 MiB). The writer thread still makes and rotates keys, evicts
            under the size cap, and takes any batch the child did not acknowledge. Default:
            ``storage.writer_process`` of the settings (off). See docs/performance.md.

    Returns:
        The open store; close it with :meth:`RecordStore.close` or ``async with``.

    Raises:
        KeyMissing: The database exists and its master key is not available.
        WrongKey: The key store does not belong to this database.
        StoreIntegrityError: The database failed its integrity check.
        StoreNotFound: ``readonly`` and there is no record database (nothing is created).
        StoreInUse: Opening for writing while this process or another one holds the store.
        StorageError: The database cannot be used.
        UsageError: ``paths`` is not a :class:`~wking_device.config.Paths`, or ``max_batch``
            is not an int of at least 1.
    """
    if not isinstance(paths, Paths):
        raise UsageError(
            f"paths must be a Paths, not {type(paths).__name__}",
            remedy="pass the installation's paths: open_store(resolve_paths(home))",
        )
    _arguments.positive(max_batch, "max_batch")
    settings = settings if settings is not None else load_settings(paths)
    warn_loose_permissions(paths)
    db = paths.data_dir / DB_FILE
    exists = db.exists() and db.stat().st_size > 0
    if readonly and not exists:
        raise StoreNotFound("there is no record store yet", path=str(db))
    if not readonly:
        paths.ensure()  # a read-only open creates and changes nothing (a read-only home works)
    if keys is None:
        keys = open_key_store(paths, create=not exists, backend=key_backend)
    lock_fd = None if readonly else _lock(paths)
    conn: sqlite3.Connection | None = None
    try:
        conn = _connect(db, readonly=readonly)
        _prepare(conn, keys, readonly=readonly, check=check)
        store = RecordStore(
            conn,
            keys,
            directory=paths.data_dir,
            max_bytes=max_bytes if max_bytes is not None else settings.storage.max_bytes,
            rotate_after=settings.storage.dek_rotation_days * 86400.0,
            retention=retention if retention is not None else catalog_retention(),
            priority=priority if priority is not None else DEFAULT_PRIORITY,
            clock=clock,
            readonly=readonly,
            lock_fd=lock_fd,
            max_batch=max_batch,
            ledger_file=ledger_path(paths),
            permit_key=None if readonly else permit_key(keys.secret(LEDGER_SECRET)),
            held=None if readonly else _held_key(paths),
            writer_process=(
                settings.storage.writer_process if writer_process is None else writer_process
            ),
        )
        if not readonly:
            with _HELD_LOCK:
                _HELD.add(_held_key(paths))
    except sqlite3.Error as exc:
        if conn is not None:
            conn.close()
        if lock_fd is not None:
            os.close(lock_fd)
        error = _translate(exc, paths.data_dir)
        if isinstance(error, StorageError) and not isinstance(error, StoreFull):
            error = StoreIntegrityError(f"the record database cannot be opened: {exc}")
        raise error from exc
    except BaseException:
        if conn is not None:
            conn.close()
        if lock_fd is not None:
            os.close(lock_fd)
        raise
    store._watching = finish_withdrawals
    if finish_withdrawals and not readonly:
        # withdrawals first: nothing withdrawn waits behind other work (and appends wait
        # behind them, with a writer process too)
        store._enqueue(_Call(store._finish_withdrawals_sync), fence=True)
    if not readonly:
        # rows sealed before their times were bound: queued before any work a caller asks for
        store._enqueue(_Call(store._reseal_sync))
    _LOGGER.debug("record store open (key store %s)", keys.level)
    return store
