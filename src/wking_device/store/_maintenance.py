"""Maintenance of the stored records: crypto-shredding, withdrawals, retention, export, counts.

This module owns :class:`_Maintenance`, the part of :class:`~wking_device.store.RecordStore`
that runs on the writer thread for everything but appends and claims: purging a category by
destroying its data keys, carrying out the consent ledger's withdrawals (once each, crash-safe,
marked in ``meta``), retention sweeps and the authentication pass that follows them, re-sealing
rows of the old envelope, export for the owner, and the counts of :class:`StoreStats`.

It does not decide consent (:mod:`wking_device.consent` says, from the ledger it reads, which
permits' grants lapsed: ``_refusal``), queue work or run the writer thread (:mod:`._store`), or
know a category's retention (passed in as ``retention``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from wking_device.consent import Ledger
from wking_device.consent._gate import ledger_view
from wking_device.crypto import LEDGER_SECRET, LEGACY_ENVELOPE_VERSION
from wking_device.errors import ConsentError, LedgerTampered, PermitRevoked
from wking_device.policy import CATALOG
from wking_device.store._claims import _Claims
from wking_device.store._files import _CLAIMED_NOTE, _WITHDRAWALS_DONE
from wking_device.store._records import DEFAULT_RETENTION, _retention_end
from wking_device.store._rows import _CHUNK
from wking_device.store._schema import STATE_CLAIMED, STATE_PENDING, STATE_REJECTED, encode_body

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wking_device.consent import LedgerEntry
    from wking_device.models import Record
    from wking_device.store._batches import _Group

__all__ = ["StoreStats", "SweepResult"]

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreStats:
    """What ``wking data status`` shows.

    Attributes:
        total: Records kept.
        pending: Records waiting for upload.
        claimed: Records claimed by an uploader and not yet acknowledged.
        rejected: Records the collector rejected (kept for inspection, not sent again).
        by_category: Records kept per category.
        quarantined: Records that failed authentication (kept aside, never decrypted).
        evicted: Records dropped by the size cap (the loss counter).
        shredded: Records deleted by crypto-shredding (withdrawal, erasure).
        key_store: The key-store level in use.
        bytes: Approximate size counted against the cap.
        max_bytes: The size cap.
    """

    total: int
    pending: int
    claimed: int
    by_category: dict[str, int]
    quarantined: int
    evicted: int
    shredded: int
    key_store: str | None
    bytes: int
    max_bytes: int
    rejected: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON shape of ``wking data status --json``."""
        return {
            "records": {
                "total": self.total,
                "pending": self.pending,
                "claimed": self.claimed,
                "rejected": self.rejected,
                "by_category": dict(sorted(self.by_category.items())),
            },
            "quarantined": self.quarantined,
            "evicted": self.evicted,
            "shredded": self.shredded,
            "key_store": self.key_store,
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepResult:
    """What a retention sweep did.

    Attributes:
        expired: Records deleted because their retention ended.
        keys_destroyed: Data keys destroyed because no record needs them any more.
        quarantined: Records set aside because they failed authentication (edited rows).
    """

    expired: int
    keys_destroyed: int
    quarantined: int = 0


class _Maintenance(_Claims):
    """Purge, withdrawals, sweep, verify, reseal, export and stats (writer thread only)."""

    def _purge_sync(self, category: str) -> int:
        with self._keys_paused():  # a writer process holding these keys is stopped first
            return self._purge_paused(category)

    def _purge_paused(self, category: str) -> int:
        # Shred first: once the keys are gone the rows are unreadable even if we crash before
        # deleting them (the next read drops them as shredded).
        doomed = {
            key_id
            for key_id, scope in self.keys.data_key_ids().items()
            if category in scope.split("+")
        }
        destroyed = self.keys.destroy_data_keys(key_ids=doomed) if doomed else []
        self._forget_keys(destroyed)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            deleted = conn.execute("DELETE FROM records WHERE category = ?", (category,)).rowcount
            for start in range(0, len(destroyed), _CHUNK):
                chunk = destroyed[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                deleted += conn.execute(
                    f"DELETE FROM records WHERE key_id IN ({marks})",  # noqa: S608
                    chunk,
                ).rowcount
            conn.execute("DELETE FROM quarantine WHERE category = ?", (category,))
            conn.executemany(
                "DELETE FROM nonce_blocks WHERE key_id = ?", [(key_id,) for key_id in destroyed]
            )
            conn.execute("UPDATE meta SET value = value + ? WHERE name = 'shredded'", (deleted,))
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._forget_gone_claims()
        self._bytes = self._measure()
        if deleted or destroyed:
            _LOGGER.info(
                "purged %s: %d records, %d data keys destroyed", category, deleted, len(destroyed)
            )
        return int(deleted)

    def _installation_ledger(self) -> Ledger | None:
        """The installation's ledger, read with the key store's ledger key (None: no ledger)."""
        if self._ledger is None:
            path = self._ledger_file
            if path is None or not path.exists():
                return None
            self._ledger = Ledger(path, self.keys.secret(LEDGER_SECRET))
        return self._ledger

    def _read_ledger(self) -> tuple[LedgerEntry, ...] | None:
        """Load the installation's ledger and keep what it says of grants for appends.

        Appends are checked against it as well as against their permits (see ``_lapsed``): a
        permit is only as fresh as the last time its gate re-read the ledger, which may be
        after another process withdrew.

        Returns:
            The verified entries, or ``None`` (no ledger, or one that fails verification:
            every append is refused then, as the gate fails closed).
        """
        stamp = self._ledger_stamp()  # before reading: a change while reading shows later
        ledger = self._installation_ledger()
        if ledger is None:
            self._view_stamp = stamp
            return None
        try:
            entries = ledger.load()
        except LedgerTampered as exc:
            # the gate reports it (exit 7 / an error in the agent); nothing can be trusted here
            _LOGGER.debug("the consent ledger fails verification: %s", exc)
            self._consent_view = ledger_view(None)
            self._view_stamp = stamp
            return None
        self._consent_view = ledger_view(entries)
        self._view_stamp = stamp  # after the view: a thread that sees this stamp sees the view
        return entries

    def _ledger_stamp(self) -> tuple[int, int, int] | None:
        """The ledger file's identity, size and time (``None``: no ledger; any thread).

        Appends only grow the file and a replaced or reset ledger is another file, so a batch
        may skip the writer thread (go to a writer process) only while this equals the stamp
        of the ledger the writer thread last read (``_view_stamp``).
        """
        path = self._ledger_file
        if path is None:
            return None
        try:
            st = path.stat()
        except OSError:
            return (-1, -1, -1)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _refusal(self, group: _Group) -> ConsentError | None:
        """Why a group's records may not be written now (``None``: they may).

        Its permit may have been revoked while the records waited in the queue, or another
        process withdrew (or turned Do Not Track on...) before the permit's gate re-read the
        ledger: the ledger as the writer thread last read it is checked too.
        """
        try:
            for category in group.needed:
                group.permit.require(category)
        except ConsentError as exc:
            return exc
        view = self._consent_view
        if view is None:
            return None
        permit = group.permit
        for category in group.needed:
            reason = view.lapsed(category, permit.consent_ids.get(category, ""))
            if reason == "ledger_tampered":  # nothing was recorded: the ledger is not trusted
                return PermitRevoked(
                    f"permit {permit.permit_id} is refused: the consent ledger fails "
                    "verification, so the store takes no appends",
                    remedy="run `wking consent history` to see what is wrong with the ledger",
                )
            if reason is not None:
                return PermitRevoked(
                    f"permit {permit.permit_id} was revoked ({reason}: {category}, "
                    "recorded in the consent ledger)",
                    remedy="ask the consent gate for a new permit",
                )
        return None

    def _finish_withdrawals_sync(self) -> dict[str, int]:
        if self.readonly:
            return {}
        self._watching = True
        entries = self._read_ledger()
        if entries is None:
            return {}
        withdrawals = [entry for entry in entries if entry.event == "withdraw"]
        row = self._conn.execute(
            "SELECT value FROM meta WHERE name = ?", (_WITHDRAWALS_DONE,)
        ).fetchone()
        done = _marker_seq(None if row is None else str(row[0]), entries)
        if done is None:
            # No marker of this ledger (a store from before markers, or a ledger that was
            # reset): shred what is withdrawn now, as attach() always did.
            last: dict[str, str] = {}
            for entry in entries:
                if entry.event in {"grant", "withdraw"}:
                    last.update(dict.fromkeys(entry.categories, entry.event))
            doomed = {category for category, event in last.items() if event == "withdraw"}
        else:
            doomed = {c for entry in withdrawals if entry.seq > done for c in entry.categories}
        purged = {
            category: self._purge_sync(category)
            for category in sorted(doomed)
            if category in CATALOG
        }
        if withdrawals:
            newest = withdrawals[-1]
            self._conn.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (_WITHDRAWALS_DONE, f"{newest.seq}:{newest.hash}"),
            )
        if purged:
            _LOGGER.info("carried out pending withdrawals: %s", ", ".join(purged))
        return purged

    def _sweep_sync(self, now: float | None) -> SweepResult:
        now = self._clock() if now is None else now
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            expired = conn.execute("DELETE FROM records WHERE expires_at <= ?", (now,)).rowcount
            # quarantined ciphertext is kept for inspection, not for ever
            longest = max([DEFAULT_RETENTION, *self._retention.values()])
            conn.execute("DELETE FROM quarantine WHERE quarantined_at <= ?", (now - longest,))
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if expired:
            self._forget_gone_claims()
        destroyed: list[int] = []
        if self._unused_keys():
            # a writer process may hold one of them with rows it has not committed yet: once
            # it is stopped its rows are in the table, and the keys are looked at again
            with self._keys_paused():
                doomed = self._unused_keys()
                destroyed = self.keys.destroy_data_keys(key_ids=doomed) if doomed else []
                self._forget_keys(destroyed)
        if expired:
            self._bytes = self._measure()
        return SweepResult(expired=int(expired), keys_destroyed=len(destroyed))

    def _unused_keys(self) -> set[int]:
        """Data keys no record needs: no row sealed with them, and not the newest of a scope."""
        conn = self._conn
        in_use = {int(key_id) for (key_id,) in conn.execute("SELECT DISTINCT key_id FROM records")}
        live = self.keys.data_key_ids()
        newest: dict[str, int] = {}
        for key_id, category in live.items():
            newest[category] = max(newest.get(category, key_id), key_id)
        return {
            key_id
            for key_id, category in live.items()
            if key_id not in in_use and key_id != newest[category]
        }

    _VERIFY_CHUNK: Final = 2000

    def _verify_sync(self, after: int) -> tuple[int, int | None]:
        """Authenticate the records after ``seq``; quarantine failures. Returns (bad, next)."""
        conn = self._conn
        rows = conn.execute(
            f"{self._SELECT} WHERE seq > ? ORDER BY seq LIMIT ?", (after, self._VERIFY_CHUNK)
        ).fetchall()
        if not rows:
            return 0, None
        _, bad, shredded = self._open_rows(rows)
        self._set_aside_now(bad, shredded)
        return len(bad), int(rows[-1][0])

    def _reseal_sync(self) -> int:
        """Re-seal envelope version 1 rows so their times are bound (once, after an upgrade).

        Their times were not authenticated before: the new expiry is capped at the retention
        the store applies now, counted from no later than now. Rows that do not open are
        quarantined (or dropped, when their key was shredded) as on any read.
        """
        conn = self._conn
        now = self._clock()
        resealed = 0
        after = 0
        legacy = bytes([LEGACY_ENVELOPE_VERSION])
        while True:
            rows = conn.execute(
                f"{self._SELECT} WHERE seq > ? AND substr(payload, 1, 1) = ? ORDER BY seq LIMIT ?",
                (after, legacy, _CHUNK),
            ).fetchall()
            if not rows:
                return resealed
            after = int(rows[-1][0])
            good, bad, shredded = self._open_rows(rows)
            by_seq = {int(row[0]): row for row in rows}
            updates: list[tuple[float, bytes, int]] = []
            for seq, record in good:
                row = by_seq[seq]
                sealer = self._sealer_for(int(row[3]))
                assert sealer is not None  # it just opened the row
                if sealer.remaining() < 1:
                    self._reserve(sealer)
                created = float(record.created_at) + 0.0
                end = _retention_end(created, now, record.category, self._retention)
                expires = min(float(row[5]), end) + 0.0
                payload = sealer.seal(
                    record.record_id,
                    record.category,
                    encode_body(record),
                    created_at=created,
                    expires_at=expires,
                )
                updates.append((expires, payload, seq))
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "UPDATE records SET expires_at = ?, payload = ? WHERE seq = ?", updates
                )
                self._set_aside(bad, shredded)
                conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            resealed += len(updates)
            self._bytes = self._measure()

    def _export_sync(self, categories: list[str] | None) -> list[Record]:
        conn = self._conn
        now = self._clock()  # records past their retention are not shown, swept or not
        if categories is None:
            rows = conn.execute(
                f"{self._SELECT} WHERE expires_at > ? ORDER BY seq", (now,)
            ).fetchall()
        else:
            marks = ",".join("?" * len(categories))
            rows = conn.execute(
                f"{self._SELECT} WHERE category IN ({marks}) AND expires_at > ? ORDER BY seq",
                (*categories, now),
            ).fetchall()
        good, bad, shredded = self._open_rows(rows)
        if not self.readonly:
            self._set_aside_now(bad, shredded)
        return [record for _, record in good]

    def _stats_sync(self) -> StoreStats:
        conn = self._conn
        states = dict(conn.execute("SELECT state, COUNT(*) FROM records GROUP BY state").fetchall())
        by_category = dict(
            conn.execute("SELECT category, COUNT(*) FROM records GROUP BY category").fetchall()
        )
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
        unclaimed = int(states.get(STATE_PENDING, 0))
        if self.readonly:
            # the writer's claims are in its memory: read the number it noted
            held = min(int(meta.get(_CLAIMED_NOTE, 0)), unclaimed)
        else:
            held = self._claimed_count()
        return StoreStats(
            total=sum(states.values()),
            pending=unclaimed - held,
            claimed=held + int(states.get(STATE_CLAIMED, 0)),
            rejected=int(states.get(STATE_REJECTED, 0)),
            by_category={str(k): int(v) for k, v in by_category.items()},
            quarantined=int(meta.get("quarantined", 0)),
            evicted=int(meta.get("evicted", 0)),
            shredded=int(meta.get("shredded", 0)),
            key_store=self.keys.level,
            bytes=self._stored_bytes,
            max_bytes=self.max_bytes,
        )


def _marker_seq(marker: str | None, entries: Sequence[Any]) -> int | None:
    """The ledger seq a ``withdrawals_done`` marker names, if it names an entry of this ledger."""
    if marker is None:
        return None
    seq_text, _, digest = marker.partition(":")
    try:
        seq = int(seq_text)
    except ValueError:
        return None
    if 0 <= seq < len(entries) and entries[seq].hash == digest:
        return seq
    return None
