"""The consent ledger: an append-only, hash-chained, HMAC'd JSON-lines file.

This module owns the ledger's on-disk format, its verification and its durable, locked appends.
It does not interpret the events (the gate replays them into consent states) and it does not own
its key: the HMAC key is given as bytes, kept apart from the ledger (the installation wiring takes
it from the key store as the ``ledger-hmac`` secret).

Format (DESIGN §3). ``ledger.jsonl`` holds one canonical JSON object per line (sorted keys, no
spaces)::

    {"categories": [...], "event": "grant", "hmac": "<hex>", "id": "<32 hex>", "method": "api",
     "policy_digest": "sha256:<hex>", "policy_version": "1.1", "prev": "<hex>", "region": "EU",
     "seq": 0, "time": "2026-06-01T12:00:00.000000Z"}

``prev`` is the SHA-256 of the previous line's bytes (64 zeros for the first entry) and ``hmac``
is HMAC-SHA-256 over the line without its ``hmac`` field, so the MAC covers the whole chain.
Editing an entry breaks its HMAC; deleting or reordering entries breaks ``seq`` and ``prev``.
Removing entries from the end leaves a valid chain, so ``ledger.head`` records the entry count and
the hash of the last line under the same key: a truncated (or deleted) ledger no longer matches
its head. Both files rolled back together to an older pair (undoing a withdrawal), or both
deleted, still verify on their own; an optional *anchor* (:class:`LedgerAnchor`, the
installation keeps it in the key store file, away from the ledger) records the same count and
hash, HMAC'd, after every append, so a ledger with fewer entries than its anchor, or whose entry
at the anchor's position differs, fails verification. See docs/security.md for what this does
not detect (someone who holds the key and rewrites the anchor too).

Crash safety: an append writes and fsyncs the line, then atomically replaces the head (the very
first append writes an empty head before its line). A crash
between the two leaves one authenticated entry beyond the head, which the next load accepts and
records in the head; a torn, newline-less tail beyond the head is an append that never completed
and is cut off. Appends take an exclusive ``fcntl`` lock on ``ledger.lock`` and re-read the file
under it, so concurrent processes never interleave or fork the chain.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from wking_device._atomic import atomic_write, fsync_dir
from wking_device.errors import LedgerTampered, StorageError, UsageError, WkingError
from wking_device.models import new_record_id

__all__ = ["GENESIS", "Ledger", "LedgerAnchor", "LedgerEntry"]

_LOGGER = logging.getLogger(__name__)

GENESIS = "0" * 64
"""The ``prev`` of the first entry."""

_FIELDS = frozenset(
    {
        "categories",
        "event",
        "hmac",
        "id",
        "method",
        "policy_digest",
        "policy_version",
        "prev",
        "region",
        "seq",
        "time",
    }
)
_MIN_KEY_BYTES = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry:
    """One verified ledger entry.

    Attributes:
        seq: 0-based position in the ledger.
        id: Unique entry id; a grant's id is the ``consent_id`` of records collected under it.
        time: UTC time of the event (ISO 8601, ``Z``).
        event: ``grant``, ``withdraw``, ``dnt_on``, ``dnt_off``, ``minor_on``, ``minor_off`` or
            ``policy_installed``.
        categories: The categories the event concerns (sorted).
        method: How it was made: ``api``, ``cli-prompt``, ``cli-yes``, ``guardian`` for grants
            and withdrawals; ``settings`` or ``system`` for recorded facts.
        policy_version: The installed policy version when the event was recorded.
        policy_digest: ``sha256:<hex>`` of that policy's text.
        region: The user's region (from the settings).
        prev: SHA-256 of the previous entry's line.
        hash: SHA-256 of this entry's line (the next entry's ``prev``).
    """

    seq: int
    id: str
    time: str
    event: str
    categories: tuple[str, ...]
    method: str
    policy_version: str
    policy_digest: str
    region: str
    prev: str
    hash: str

    @property
    def timestamp(self) -> float:
        """The event time as seconds since the epoch."""
        return datetime.fromisoformat(self.time).timestamp()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of the entry (for history and receipts)."""
        return {
            "seq": self.seq,
            "id": self.id,
            "time": self.time,
            "event": self.event,
            "categories": list(self.categories),
            "method": self.method,
            "policy_version": self.policy_version,
            "policy_digest": self.policy_digest,
            "region": self.region,
            "prev": self.prev,
            "hash": self.hash,
        }


def _storage_error(path: Path, exc: OSError) -> StorageError:
    return StorageError(
        f"cannot use the consent ledger {path}: {exc.strerror or exc}",
        remedy="check that the data directory exists, is writable and the disk is not full",
    )


def _utc_iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


class LedgerAnchor(Protocol):
    """A second place that keeps the ledger's head, to notice a ledger rolled back as a whole."""

    def read(self) -> str | None:
        """Return the value last written, or ``None``."""

    def write(self, value: str) -> None:
        """Keep ``value`` durably."""


class _Loaded:
    """The result of reading both files: verified entries and what (if anything) to repair."""

    __slots__ = ("anchor_behind", "entries", "head_anchored", "repair_head", "torn_tail_at")

    def __init__(self) -> None:
        self.anchor_behind = False
        self.head_anchored = False
        self.entries: list[LedgerEntry] = []
        self.repair_head = False
        self.torn_tail_at: int | None = None


class Ledger:
    """The consent ledger of one installation.

    Args:
        path: The ledger file (``<data dir>/consent/ledger.jsonl``); its directory holds the head
            and lock files too and is created 0700 on first append.
        key: The HMAC key (at least 16 bytes), kept apart from the ledger.
        clock: Wall-clock time source (seconds since the epoch), injectable for tests.
        anchor: Where the head is kept a second time (checked on load, written on append).
        readonly: Never write: no repair of an interrupted append, no anchor update, no lock
            file (for commands that only report, and homes on read-only file systems).

    Raises:
        UsageError: The key is not bytes or too short.
    """

    def __init__(
        self,
        path: Path,
        key: bytes,
        *,
        clock: Callable[[], float] = time.time,
        anchor: LedgerAnchor | None = None,
        readonly: bool = False,
    ) -> None:
        if isinstance(key, bytearray | memoryview):
            key = bytes(key)
        if not isinstance(key, bytes):
            raise UsageError(f"the ledger key must be bytes, not {type(key).__name__}")
        path = Path(path)  # a str is taken too (with_name below needs a Path)
        if len(key) < _MIN_KEY_BYTES:
            raise UsageError(f"the ledger key must be at least {_MIN_KEY_BYTES} bytes")
        self.path = path
        self.head_path = path.with_name(path.name + ".head")
        self.lock_path = path.with_name(path.name + ".lock")
        self._key = key
        self._clock = clock
        self._anchor = anchor
        self.readonly = readonly
        self._entries: list[LedgerEntry] = []
        self._stamp: tuple[int, ...] | None = None

    # --- reading ------------------------------------------------------------------------------

    @property
    def key(self) -> bytes:
        """The HMAC key (the consent gate derives its permit key from it)."""
        return self._key

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        """The entries as of the last :meth:`load` or :meth:`append`."""
        return tuple(self._entries)

    def changed_on_disk(self) -> bool:
        """Tell whether the files changed since this object last read or wrote them (cheap)."""
        return self._disk_stamp() != self._stamp

    def load(self) -> tuple[LedgerEntry, ...]:
        """Read and verify the ledger, repairing an interrupted append.

        Returns:
            The verified entries.

        Raises:
            LedgerTampered: An entry was edited, deleted, reordered, truncated or forged, or the
                head does not match.
        """
        if not self.path.exists() and not self.head_path.exists():
            self._check_anchor([], anchored=False)
            self._entries = []
            self._stamp = self._disk_stamp()
            return ()
        if self.readonly:
            self._load_unlocked()
        else:
            with self._locked():
                self._load_locked()
        return tuple(self._entries)

    def _load_unlocked(self) -> None:
        """Verify without the lock and without repairs (a read-only look)."""
        loaded = self._verify()
        entries = loaded.entries
        if loaded.torn_tail_at is not None:
            _LOGGER.debug("consent ledger: an interrupted append is ignored (read-only)")
        self._entries = entries
        self._stamp = self._disk_stamp()

    def _anchor_value(self, count: int, last: str) -> str:
        return f"{count}:{last}:{self._mac(f'anchor|{count}|{last}'.encode())}"

    def _check_anchor(self, entries: list[LedgerEntry], *, anchored: bool) -> bool:
        """Compare the ledger with its anchor; return whether the anchor is behind (to update).

        Raises:
            LedgerTampered: The ledger has fewer entries than the anchor, or another entry at
                its position: it was rolled back (or deleted) as a whole; or its head says it
                is anchored and the anchor is gone (deleting the anchor needs no key).
        """
        if self._anchor is None:
            return False
        try:
            raw = self._anchor.read()
        except (OSError, WkingError) as exc:
            _LOGGER.debug("the ledger anchor cannot be read: %s", exc)
            return False
        if raw is None:
            if anchored:
                raise LedgerTampered(
                    "the ledger was rolled back or its anchor removed: the key store keeps no "
                    "anchor for an anchored ledger"
                )
            return bool(entries)
        count_text, _, rest = raw.partition(":")
        last = rest.partition(":")[0]
        try:
            count = int(count_text)
        except ValueError:
            raise LedgerTampered("the ledger anchor in the key store is malformed") from None
        if not hmac.compare_digest(self._anchor_value(count, last), raw):
            raise LedgerTampered("the ledger anchor in the key store fails authentication")
        if count > len(entries):
            raise LedgerTampered(
                f"the ledger was rolled back: the key store records {count} entries, "
                f"the ledger has {len(entries)}",
                entry=len(entries),
            )
        if count and entries[count - 1].hash != last:
            raise LedgerTampered(
                f"the ledger was replaced: entry {count - 1} is not the one the key store recorded",
                entry=count - 1,
            )
        return count < len(entries)

    def _write_anchor(self, count: int, last: str) -> None:
        if self._anchor is None or self.readonly:
            return
        try:
            self._anchor.write(self._anchor_value(count, last))
        except (OSError, WkingError) as exc:
            # the ledger entry is durable; the next writable load brings the anchor up to date
            _LOGGER.warning("consent ledger: cannot update its anchor in the key store: %s", exc)

    def _disk_stamp(self) -> tuple[int, ...]:
        stamp: list[int] = []
        for file in (self.path, self.head_path):
            try:
                st = file.stat()
            except FileNotFoundError:
                stamp.extend((-1, -1, -1))
            else:
                stamp.extend((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamp)

    def _mac(self, body: bytes) -> str:
        return hmac.new(self._key, body, hashlib.sha256).hexdigest()

    def _read_head(self) -> tuple[int, str, bool] | None:
        try:
            raw = self.head_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            head = orjson.loads(raw)
            count, last, tag = head["count"], head["last"], head["hmac"]
            anchored = head.get("anchored", False)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise LedgerTampered(f"the ledger head is malformed: {exc}") from exc
        if (
            not isinstance(count, int)
            or not isinstance(last, str)
            or not isinstance(anchored, bool)
        ):
            raise LedgerTampered("the ledger head is malformed")
        body: dict[str, Any] = {"count": count, "last": last}
        if anchored:
            body["anchored"] = True
        expected = self._mac(_canonical(body))
        if not isinstance(tag, str) or not hmac.compare_digest(tag, expected):
            raise LedgerTampered("the ledger head fails authentication")
        return count, last, anchored

    def _parse_line(self, seq: int, line: bytes, prev: str) -> LedgerEntry:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise LedgerTampered(f"ledger entry {seq} is not JSON", entry=seq) from exc
        if not isinstance(obj, dict) or set(obj) != _FIELDS:
            raise LedgerTampered(f"ledger entry {seq} has unexpected fields", entry=seq)
        tag = obj.pop("hmac")
        if not isinstance(tag, str) or not hmac.compare_digest(tag, self._mac(_canonical(obj))):
            raise LedgerTampered(f"ledger entry {seq} fails authentication", entry=seq)
        if obj["seq"] != seq:
            raise LedgerTampered(
                f"ledger entry {seq} is out of order (it says {obj['seq']})", entry=seq
            )
        if obj["prev"] != prev:
            raise LedgerTampered(f"ledger entry {seq} does not follow its predecessor", entry=seq)
        categories = obj["categories"]
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise LedgerTampered(f"ledger entry {seq} has malformed categories", entry=seq)
        return LedgerEntry(
            seq=seq,
            id=str(obj["id"]),
            time=str(obj["time"]),
            event=str(obj["event"]),
            categories=tuple(categories),
            method=str(obj["method"]),
            policy_version=str(obj["policy_version"]),
            policy_digest=str(obj["policy_digest"]),
            region=str(obj["region"]),
            prev=prev,
            hash=hashlib.sha256(line).hexdigest(),
        )

    def _verify(self) -> _Loaded:
        result = _Loaded()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = None
        head = self._read_head()
        if data is None:
            if head is not None and head[0] > 0:
                raise LedgerTampered("the ledger file was deleted", entry=0)
            self._check_anchor([], anchored=head is not None and head[2])
            return result
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        prev = GENESIS
        for seq, line in enumerate(lines):
            entry = self._parse_line(seq, line, prev)
            result.entries.append(entry)
            prev = entry.hash
        count = len(result.entries)
        if head is None:
            if count or tail:
                raise LedgerTampered("the ledger head is missing")
            self._check_anchor(result.entries, anchored=False)
            return result
        head_count, head_last, result.head_anchored = head
        if head_count == count and head_last == (prev if count else GENESIS):
            pass
        elif head_count == count - 1 and head_last == (
            result.entries[-2].hash if count > 1 else GENESIS
        ):
            # An append wrote and synced its entry but not the head: the entry is authentic.
            result.repair_head = True
        elif head_count > count:
            raise LedgerTampered(
                f"the ledger was truncated: {head_count} entries expected, {count} found",
                entry=count,
            )
        else:
            raise LedgerTampered("the ledger does not match its head", entry=min(count, head_count))
        if tail:
            # A torn append (no newline, never acknowledged): cut it off under the lock.
            result.torn_tail_at = len(data) - len(tail)
        result.anchor_behind = self._check_anchor(result.entries, anchored=result.head_anchored)
        return result

    def _load_locked(self) -> None:
        loaded = self._verify()
        if loaded.torn_tail_at is not None:
            _LOGGER.warning("consent ledger: discarding an interrupted append")
            with self.path.open("r+b") as file:
                file.truncate(loaded.torn_tail_at)
                os.fsync(file.fileno())
        if loaded.repair_head:
            _LOGGER.warning("consent ledger: completing an interrupted append")
            last = loaded.entries[-1].hash if loaded.entries else GENESIS
            self._write_head(len(loaded.entries), last)
        if loaded.anchor_behind or loaded.repair_head:
            # an anchor from before the ledger had one, or an append that stopped before it
            last = loaded.entries[-1].hash if loaded.entries else GENESIS
            self._write_anchor(len(loaded.entries), last)
            if not loaded.head_anchored and self._anchor is not None:
                self._write_head(len(loaded.entries), last)  # now say it is anchored
        self._entries = loaded.entries
        self._stamp = self._disk_stamp()

    # --- writing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the ledger's lock; file-system errors become :class:`StorageError` here."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _storage_error(self.path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        except OSError as exc:
            raise _storage_error(self.path, exc) from exc
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _write_head(self, count: int, last: str) -> None:
        body: dict[str, Any] = {"count": count, "last": last}
        if self._anchor is not None:
            body["anchored"] = True  # so removing the anchor is noticed too
        raw = _canonical({**body, "hmac": self._mac(_canonical(body))})
        # whole or not at all: a head cut short by a full disk would read as a tampered ledger
        atomic_write(self.head_path, raw, parents=False)

    def _head_names(self, count: int, last: str) -> bool:
        """Whether the head on disk says the ledger holds `count` entries ending in `last`."""
        try:
            head = self._read_head()
        except (OSError, LedgerTampered):
            return False
        return head is not None and head[:2] == (count, last)

    def _take_back(self, fd: int, size: int) -> None:
        """Cut the ledger back to `size` bytes (durably), undoing an entry not recorded."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as exc:  # the entry stays: the next load completes it, as after a crash
            _LOGGER.warning("consent ledger: cannot take back an entry not recorded: %s", exc)

    def _write_line(self, fd: int, data: bytes) -> None:
        """Write one whole line, or nothing that counts: a partial write is taken back.

        ``os.write`` may write less than asked without raising (a file-size limit, a disk
        filling up); the entry is then not recorded (no head is written for it).

        Raises:
            StorageError: The line was written in part only.
        """
        before = os.fstat(fd).st_size
        written = os.write(fd, data)
        if written == len(data):
            return
        with contextlib.suppress(OSError):  # else the next load cuts the torn line off
            os.ftruncate(fd, before)
            os.fsync(fd)
        raise StorageError(
            f"cannot use the consent ledger {self.path}: only {written} of {len(data)} bytes "
            "of the entry were written; it is not recorded",
            remedy="free disk space (or raise the file-size limit) and try again",
        )

    def append(
        self,
        event: str,
        categories: Iterable[str],
        *,
        method: str,
        policy_version: str,
        policy_digest: str,
        region: str,
    ) -> LedgerEntry:
        """Durably append one event (fsync'd before returning).

        The ledger is re-read and verified under the lock first, so entries appended by other
        processes are kept and chained.

        Args:
            event: The event name.
            categories: The categories it concerns.
            method: How it was made.
            policy_version: The installed policy version.
            policy_digest: That policy's digest.
            region: The user's region.

        Returns:
            The new entry.

        Raises:
            LedgerTampered: The ledger on disk does not verify; nothing is written.
            StorageError: The file system refused (read-only, full, permissions).
        """
        if self.readonly:
            raise UsageError("the consent ledger was opened read-only")
        with self._locked():
            if self._disk_stamp() != self._stamp or not self.path.exists():
                self._load_locked()
            seq = len(self._entries)
            prev = self._entries[-1].hash if self._entries else GENESIS
            body: dict[str, Any] = {
                "categories": sorted(set(categories)),
                "event": event,
                "id": new_record_id(),
                "method": method,
                "policy_digest": policy_digest,
                "policy_version": policy_version,
                "prev": prev,
                "region": region,
                "seq": seq,
                "time": _utc_iso(self._clock()),
            }
            line = _canonical({**body, "hmac": self._mac(_canonical(body))})
            created = not self.path.exists()
            if seq == 0 and not self.head_path.exists():
                # The head exists before the first entry, so a crash right after writing that
                # entry looks like an interrupted append, not like a deleted head.
                self._write_head(0, GENESIS)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                before = os.fstat(fd).st_size
                self._write_line(fd, line + b"\n")
                os.fsync(fd)
                if created:
                    fsync_dir(self.path.parent)
                entry = self._parse_line(seq, line, prev)
                try:
                    self._write_head(seq + 1, entry.hash)
                except BaseException as exc:
                    if not self._head_names(seq + 1, entry.hash):
                        # the caller is told the entry failed: it must not be in force later
                        # (a load would adopt it as an interrupted append: a grant the user
                        # was told had failed would let collection start)
                        self._take_back(fd, before)
                        raise
                    if not isinstance(exc, Exception):  # an interrupt: not ours to swallow
                        raise
                    # the head is in place (only its directory's sync failed): recorded
                    _LOGGER.warning("consent ledger: the head is written but not synced")
            finally:
                os.close(fd)
            self._write_anchor(seq + 1, entry.hash)
            self._entries.append(entry)
            self._stamp = self._disk_stamp()
            return entry

    def quarantine(self) -> Path | None:
        """Move a ledger that fails verification aside, so a new, empty one can start.

        Used by ``wking consent reset``; the old files are kept (renamed) as evidence.

        Returns:
            The new name of the old ledger file, or ``None`` when there was none.
        """
        with self._locked():
            suffix = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            moved: Path | None = None
            if self.path.exists():
                moved = self.path.with_name(f"{self.path.name}.tampered-{suffix}")
                self.path.replace(moved)
            if self.head_path.exists():
                self.head_path.replace(
                    self.head_path.with_name(f"{self.head_path.name}.tampered-{suffix}")
                )
            fsync_dir(self.path.parent)
            self._write_anchor(0, GENESIS)
            self._entries = []
            self._stamp = self._disk_stamp()
            return moved
