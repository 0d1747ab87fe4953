"""The database schema, its migrations, and the functions between records and rows.

This module owns the SQLite layout of the record store (``PRAGMA user_version`` is the schema
version) and the conversion of a :class:`~wking_device.models.Record` to a sealed row and back.
Plaintext columns are only what scheduling needs: sequence, record id, category, key id,
created/expires times and state. Everything else (body, consent id, policy version) is inside the
AES-GCM payload, whose associated data binds every plaintext column but ``seq`` and ``state``
(see docs/security.md). It does not hold keys.

Schema history: 1, the first; 2 (issue 7), ``meta.value`` is ``TEXT`` (declared ``ANY`` it let
SQLite turn a store id such as ``0012345678901234`` or ``12e4567890123456`` into a number) and
payloads bind ``created_at`` and ``expires_at`` (envelope version 2; the store re-seals version 1
rows when it opens a database for writing).
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import orjson

from wking_device._scrub import scrub_plaintext
from wking_device.errors import RecordCorrupt, StorageError, UsageError
from wking_device.models import Record

if TYPE_CHECKING:
    from wking_device.crypto import Sealer

__all__ = [
    "SCHEMA_VERSION",
    "STATE_CLAIMED",
    "STATE_PENDING",
    "STATE_REJECTED",
    "OpenedRecord",
    "PlaintextReader",
    "encode_body",
    "migrate",
    "record_from_row",
    "same_store_id",
    "serialize_body",
]

SCHEMA_VERSION: Final = 2
STATE_PENDING: Final = 0
STATE_CLAIMED: Final = 1
STATE_REJECTED: Final = 2
"""The collector declared the record rejected (OTLP ``partial_success``): kept for inspection,
never claimed again, deleted by retention or erasure like any other row."""

# Each entry upgrades the schema from version (index) to (index + 1); never edit a shipped entry.
_MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value ANY
    );
    CREATE TABLE records (
        seq INTEGER PRIMARY KEY,
        record_id TEXT NOT NULL UNIQUE,
        category TEXT NOT NULL,
        key_id INTEGER NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        state INTEGER NOT NULL DEFAULT 0,
        payload BLOB NOT NULL
    );
    CREATE INDEX records_by_category ON records (category);
    CREATE TABLE quarantine (
        seq INTEGER PRIMARY KEY,
        record_id TEXT,
        category TEXT,
        key_id INTEGER,
        created_at REAL,
        reason TEXT NOT NULL,
        quarantined_at REAL NOT NULL,
        payload BLOB
    );
    CREATE TABLE nonce_blocks (
        key_id INTEGER PRIMARY KEY,
        next INTEGER NOT NULL
    );
    """,
    # 2: meta.value as TEXT (the store id is text; counters are read back with int()); the
    # store_id row is rewritten by migrate() itself, from the key store's id
    """
    CREATE TABLE meta_v2 (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta_v2 (name, value)
        SELECT name, CAST(value AS TEXT) FROM meta WHERE value IS NOT NULL;
    DROP TABLE meta;
    ALTER TABLE meta_v2 RENAME TO meta;
    """,
)


def _as_numeric(text: str) -> Any:
    """What a column of NUMERIC affinity (schema 1 ``meta.value ANY``) made of a text."""
    with contextlib.closing(sqlite3.connect(":memory:")) as mem:
        mem.execute("CREATE TABLE t (value ANY)")
        mem.execute("INSERT INTO t VALUES (?)", (text,))
        return mem.execute("SELECT value FROM t").fetchone()[0]


def same_store_id(stored: Any, store_id: str) -> bool:
    """Tell whether a database's recorded store id is the key store's.

    A schema 1 database may hold the id as the number SQLite made of it (leading zeros and
    digits past a float's precision lost): it matches when the key store's id turns into that
    same number. Two ids that differ only in what SQLite dropped cannot be told apart then; such
    a key store still fails to open the records (its data keys do not authenticate them).
    """
    if isinstance(stored, str):
        return stored == store_id
    if isinstance(stored, int | float) and not isinstance(stored, bool):
        return bool(stored == _as_numeric(store_id))
    return False


def migrate(conn: sqlite3.Connection, *, store_id: str) -> int:
    """Bring a database to :data:`SCHEMA_VERSION`, each step in its own transaction.

    Args:
        conn: An open connection (autocommit mode: ``isolation_level=None``).
        store_id: The key store id a new database is bound to.

    Returns:
        The schema version found before migrating (0 for a new database).

    Raises:
        StorageError: The database is newer than this library.
    """
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise StorageError(
            f"the record database has schema version {found}; this library knows up to "
            f"{SCHEMA_VERSION}",
            remedy="upgrade wking-device",
        )
    for version in range(found, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # schema 1 may hold the store id as a number: read it before it is cast to text
            old_id = (
                conn.execute("SELECT value FROM meta WHERE name = 'store_id'").fetchone()
                if version == 1
                else None
            )
            for statement in _MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            if version == 0:
                conn.execute(
                    "INSERT INTO meta (name, value) VALUES ('store_id', ?), "
                    "('quarantined', 0), ('evicted', 0), ('shredded', 0)",
                    (store_id,),
                )
            if old_id is not None and same_store_id(old_id[0], store_id):
                conn.execute("UPDATE meta SET value = ? WHERE name = 'store_id'", (store_id,))
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return found


def serialize_body(record: Record) -> bytes:
    """Serialise what a row keeps encrypted: the body, the consent id and the policy version.

    ``{"c": <consent id>, "p": <policy version>, "b": <body>}`` as JSON, not yet scrubbed: the
    store's writers run :func:`~wking_device._scrub.scrub_plaintext` on it right before they
    seal it (an append only serialises its records, on the caller's event loop). The head is
    serialised once per grant and the body as ``{"b": body}``, at the depth it has in the
    whole (orjson's nesting limit applies alike); the same bytes as serialising the whole.

    Raises:
        UsageError: The body is not JSON-serialisable (checked before the record is queued, so
            one bad record fails only its own append).
    """
    consent_id, version = record.consent_id, record.policy_version
    try:
        if type(consent_id) is str and type(version) is str:
            head = _HEADS.get((consent_id, version))
            if head is None:
                head = _head(consent_id, version)
            return head + orjson.dumps({"b": record.body})[5:]  # {"b":<body>} less '{"b":'
        return orjson.dumps({"c": consent_id, "p": version, "b": record.body})
    except TypeError as exc:
        raise UsageError(f"record {record.record_id} has a body that is not JSON: {exc}") from exc


def encode_body(record: Record) -> bytes:
    """A record's plaintext as it is sealed: serialised, then scrubbed of MAC-shaped text.

    :func:`serialize_body` then :func:`~wking_device._scrub.scrub_plaintext` (every string,
    nested values, dict keys, the consent id and the policy version; only the MAC fields of a
    record under a ``mac_addresses`` permit are kept). For one-off callers such as the
    re-sealing of old rows; appends leave the scrub to the writer that seals them.

    Raises:
        UsageError: The body is not JSON-serialisable.
    """
    return scrub_plaintext(serialize_body(record), record.category)


_HEADS: dict[tuple[str, str], bytes] = {}
"""``{"c":<consent id>,"p":<policy version>,"b":`` by grant."""
_HEADS_KEPT: Final = 64


def _head(consent_id: str, version: str) -> bytes:
    """The serialised head of a grant's plaintexts."""
    head = orjson.dumps({"c": consent_id, "p": version, "b": 0})[:-2]  # the 0 and "}" cut off
    if len(_HEADS) >= _HEADS_KEPT:
        _HEADS.clear()
    _HEADS[consent_id, version] = head
    return head


_new: Final = object.__new__
_set: Final = object.__setattr__


def record_from_row(
    record_id: str,
    category: str,
    created_at: float,
    payload: bytes,
    sealer: Sealer,
    *,
    expires_at: float,
) -> Record:
    """Open a sealed row into a record.

    Raises:
        RecordCorrupt: The payload does not authenticate or does not decode.
    """
    plaintext = sealer.open(
        record_id, category, payload, created_at=created_at, expires_at=expires_at
    )
    try:
        body: Any = orjson.loads(plaintext)
        consent_id, policy_version, content = body["c"], body["p"], body["b"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise RecordCorrupt("record body does not decode", record_id=record_id) from exc
    # Record is frozen: its generated __init__ sets each field through object.__setattr__ with
    # keyword handling on top (~2x the cost of this) -- the uploader builds one per record sent
    record = _new(Record)
    _set(record, "record_id", record_id)
    _set(record, "category", category)
    _set(record, "created_at", created_at)
    _set(record, "consent_id", consent_id)
    _set(record, "policy_version", policy_version)
    _set(record, "body", content)
    return record


class OpenedRecord(NamedTuple):
    """A claimed record as the uploader reads it: its columns and its body as JSON text.

    No :class:`~wking_device.models.Record` is built and the body is not parsed: the uploader
    encodes straight from the JSON text (:class:`PlaintextReader` cut it out of the plaintext).

    The first six fields are what the uploader's encoder (``LogRecordEncoder.encode_many``)
    takes, in its order.

    Attributes:
        record_id: The record's id.
        category: Its category.
        consent_id: The grant it was collected under.
        policy_version: That grant's policy version.
        body: The body as compact JSON text (``orjson.dumps(record.body)``, byte for byte).
        created_at: Its creation time (UTC seconds).
        scope: The key scope it is sealed under (what :func:`~wking_device.store.key_scope` of
            the record gives: ``"<category>+mac_addresses"`` when it holds MAC fields).
    """

    record_id: str
    category: str
    consent_id: str
    policy_version: str
    body: bytes
    created_at: float
    scope: str


class PlaintextReader:
    """Splits a record plaintext (:func:`encode_body`) into consent id, policy version and body.

    The plaintext is ``orjson.dumps({"c": consent_id, "p": policy_version, "b": body})``
    (record schema version 1, bound into every payload's associated data). Its head up to the
    body depends only on the consent id and policy version, which few records differ in: the
    heads seen are kept (bounded), and a plaintext that starts with a known head is split by
    slicing — the body's JSON text is then exactly ``orjson.dumps(body)``, with no parse and no
    object built. JSON strings are self-delimiting, so a plaintext starting with a head has
    exactly that head's consent id and policy version. Any other plaintext is parsed in full.

    Args:
        max_heads: Distinct heads kept.
    """

    def __init__(self, max_heads: int = 256) -> None:
        self._heads: dict[bytes, tuple[str, str, int]] = {}
        self._recent: tuple[bytes, str, str, int] | None = None
        self._max_heads = max_heads

    def split(self, plaintext: bytes, record_id: str = "") -> tuple[str, str, bytes]:
        """Return ``(consent_id, policy_version, body as compact JSON text)``.

        Raises:
            RecordCorrupt: The plaintext does not decode.
        """
        recent = self._recent
        if recent is not None and plaintext.startswith(recent[0]):
            return recent[1], recent[2], plaintext[recent[3] : -1]
        for head, (consent_id, policy_version, size) in self._heads.items():
            if plaintext.startswith(head):
                self._recent = (head, consent_id, policy_version, size)
                return consent_id, policy_version, plaintext[size:-1]
        try:
            data: Any = orjson.loads(plaintext)
            consent_id, policy_version, content = data["c"], data["p"], data["b"]
            head = b"".join(
                (
                    b'{"c":',
                    orjson.dumps(consent_id),
                    b',"p":',
                    orjson.dumps(policy_version),
                    b',"b":',
                )
            )
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise RecordCorrupt("record body does not decode", record_id=record_id) from exc
        if (
            type(consent_id) is str
            and type(policy_version) is str
            and len(data) == 3
            and plaintext.startswith(head)
            and plaintext.endswith(b"}")
        ):
            if len(self._heads) >= self._max_heads:
                self._heads.clear()
            self._heads[head] = (consent_id, policy_version, len(head))
            self._recent = (head, consent_id, policy_version, len(head))
            return consent_id, policy_version, plaintext[len(head) : -1]
        return str(consent_id), str(policy_version), orjson.dumps(content)
