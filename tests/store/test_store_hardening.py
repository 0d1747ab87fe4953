"""Issue 7: resources on failed opens, store ids of any shape, bound columns, borrowed permits."""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.consent import Permit
from wking_device.crypto import ENVELOPE_VERSION, open_key_store
from wking_device.crypto._envelope import legacy_associated_data
from wking_device.errors import ForeignPermit, StoreIntegrityError, UsageError
from wking_device.models import Record
from wking_device.policy import CATALOG
from wking_device.store import DB_FILE, DEFAULT_RETENTION, open_store
from wking_device.store._schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from collections.abc import Iterator

    from wking_device.config import Paths

V1_HOME = Path(__file__).parent / "data" / "v1-home"
V1_STORE_ID = "0012345678901234"
V1_NOW = 1_800_000_100.0
"""A moment inside the retention of every record of ``v1-home`` (see data/make_v1_home.py)."""


def _record(permit: Permit, category: str = "operation_logs", **fields: Any) -> Record:
    created = fields.pop("created_at", None)
    extra = {} if created is None else {"created_at": created}
    return Record(
        category=category,
        consent_id=permit.consent_ids[category],
        policy_version=permit.policy_version,
        body=fields or {"kind": "connect", "outcome": "ok"},
        **extra,
    )


@pytest.fixture(name="opened")
def fixture_opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[sqlite3.Connection]]:
    """Every SQLite connection the code under test opens (sqlite3 is not ours: spying is fair)."""
    real = sqlite3.connect
    opened: list[sqlite3.Connection] = []

    def connect(*args, **kwargs):  # type: ignore[no-untyped-def]
        conn = real(*args, **kwargs)
        opened.append(conn)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    yield opened
    for conn in opened:
        conn.close()


def _closed(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def _garbage(paths) -> Path:  # type: ignore[no-untyped-def]
    db = paths.data_dir / DB_FILE
    db.write_bytes(b"this is not a database, just garbage bytes " * 200)
    return db


@pytest.mark.parametrize("readonly", [False, True])
def test_a_failed_open_leaks_no_connection(paths, settings, gate, readonly: bool) -> None:
    # Python 3.13 reports a connection left to the garbage collector as a ResourceWarning
    _garbage(paths)
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(StoreIntegrityError):
            open_store(paths, settings, readonly=readonly)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


@pytest.mark.parametrize("readonly", [False, True])
def test_a_failed_open_closes_every_connection_it_opened(
    paths, settings, gate, opened: list[sqlite3.Connection], readonly: bool
) -> None:
    # on 3.11 nothing warns: check the connections themselves
    _garbage(paths)
    with pytest.raises(StoreIntegrityError):
        open_store(paths, settings, readonly=readonly)
    assert opened
    assert all(_closed(conn) for conn in opened)
    # and a failed open leaves the store openable by the next process: the lock was released
    (paths.data_dir / DB_FILE).unlink()
    store = open_store(paths, settings)
    store.close()


# --- item 12: a store id that SQLite could read as a number ------------------------------------

NUMERIC_IDS = [
    "1234567890123456",  # all digits: an INTEGER under the old ANY column
    "0012345678901234",  # ... that loses its leading zeros
    "12e4567890123456",  # digits with one e: a REAL (1.2e4567890123456 -> inf)
    "1234567890123e45",  # a REAL that keeps some digits
    "0000000000000000",
]


@pytest.mark.parametrize("store_id", NUMERIC_IDS)
async def test_a_store_id_made_of_digits_still_opens(
    paths, settings, monkeypatch: pytest.MonkeyPatch, store_id: str
) -> None:
    real = os.urandom
    monkeypatch.setattr(os, "urandom", lambda n: bytes.fromhex(store_id) if n == 8 else real(n))
    gate = open_installation_gate(paths, settings)  # creates the key store with that id
    monkeypatch.setattr(os, "urandom", real)
    assert open_key_store(paths).store_id == store_id
    gate.grant(["operation_logs"], method="api")
    permit = gate.permit(["operation_logs"])
    record = _record(permit)
    store = open_store(paths, settings)
    try:
        await store.append([record], permit)
    finally:
        store.close()
    for readonly in (True, False):
        reopened = open_store(paths, settings, readonly=readonly)
        try:
            assert await reopened.export() == [record]
        finally:
            reopened.close()
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    try:
        assert conn.execute(
            "SELECT typeof(value), value FROM meta WHERE name = 'store_id'"
        ).fetchone() == (
            "text",
            store_id,
        )
    finally:
        conn.close()


def _v1_home(tmp_path: Path) -> Paths:
    """A copy of an installation written by schema 1, the store id kept as a number."""
    home = tmp_path / "v1-home"
    shutil.copytree(V1_HOME, home)
    for path in [home, *home.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)  # git does not keep modes
    return resolve_paths(home)


def _column(paths: Paths, sql: str) -> list[Any]:
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    try:
        return [row[0] if len(row) == 1 else row for row in conn.execute(sql).fetchall()]
    finally:
        conn.close()


async def test_a_schema_1_store_with_a_numeric_id_opens_and_is_migrated(tmp_path: Path) -> None:
    paths = _v1_home(tmp_path)
    settings = load_settings(paths)
    assert _column(paths, "SELECT typeof(value) FROM meta WHERE name = 'store_id'") == ["integer"]
    # read-only first (no migration): the number is recognised as the key store's id
    readonly = open_store(paths, settings, readonly=True, clock=lambda: V1_NOW)
    try:
        assert len(await readonly.export()) == 6
    finally:
        readonly.close()
    store = open_store(paths, settings, clock=lambda: V1_NOW)
    try:
        records = await store.export()
        assert sorted(r.body["n"] for r in records) == [0, 1, 2, 3, 4, 5]
        assert records[0].body["speaker_mac"] == "C0:57:4B:00:00:01"
        assert (await store.stats()).quarantined == 0
    finally:
        store.close()
    assert _column(paths, "PRAGMA user_version") == [SCHEMA_VERSION]
    assert _column(paths, "SELECT typeof(value), value FROM meta WHERE name = 'store_id'") == [
        ("text", V1_STORE_ID)
    ]
    assert _column(paths, "SELECT value FROM meta WHERE name = 'shredded'") == ["0"]


# --- item 5: times and state edited in the database file ---------------------------------------


async def test_edited_times_are_quarantined_not_kept_past_retention(
    paths, settings, gate, permit
) -> None:
    now = [1_000_000.0]
    store = open_store(paths, settings, retention={"operation_logs": 100.0}, clock=lambda: now[0])
    records = [_record(permit, n=i, created_at=now[0]) for i in range(3)]
    try:
        await store.append(records, permit)
    finally:
        store.close()
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    with conn:
        conn.execute(  # kept for ever, or so it hopes
            "UPDATE records SET expires_at = expires_at + 1e9 WHERE record_id = ?",
            (records[0].record_id,),
        )
        conn.execute(  # younger than it is
            "UPDATE records SET created_at = created_at + 50, expires_at = expires_at + 50 "
            "WHERE record_id = ?",
            (records[1].record_id,),
        )
    conn.close()
    now[0] += 120.0  # past the retention of all three
    reopened = open_store(
        paths, settings, retention={"operation_logs": 100.0}, clock=lambda: now[0]
    )
    try:
        result = await reopened.sweep()
        assert result.expired == 1
        assert result.quarantined == 2
        assert await reopened.export() == []
        stats = await reopened.stats()
        assert stats.total == 0
        assert stats.quarantined == 2
        # set aside, not kept for ever: gone once the longest retention has passed
        assert _column(paths, "SELECT COUNT(*) FROM quarantine") == [2]
        await reopened.sweep(now=now[0] + DEFAULT_RETENTION)
        assert _column(paths, "SELECT COUNT(*) FROM quarantine") == [0]
        assert (await reopened.stats()).quarantined == 2  # still counted
    finally:
        reopened.close()


async def test_an_edited_state_never_hides_a_record(paths, settings, gate, permit) -> None:
    store = open_store(paths, settings)
    record = _record(permit)
    try:
        await store.append([record], permit)
    finally:
        store.close()
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    with conn:
        conn.execute("UPDATE records SET state = 7")
    conn.close()
    reopened = open_store(paths, settings)
    try:
        assert await reopened.claim(10) == [record]
    finally:
        reopened.close()


async def test_a_rejected_record_stays_rejected_when_the_store_reopens(
    paths, settings, gate, permit
) -> None:
    # the collector refused it (OTLP partial success): a restart must not send it again
    store = open_store(paths, settings)
    rejected, claimed = _record(permit), _record(permit)
    try:
        await store.append([rejected, claimed], permit)
        assert len(await store.claim(10)) == 2
        assert await store.reject([rejected.record_id]) == 1
    finally:
        store.close()  # a crash with the other record still claimed
    reopened = open_store(paths, settings)
    try:
        assert await reopened.claim(10) == [claimed]
        stats = await reopened.stats()
        assert (stats.rejected, stats.claimed) == (1, 1)
    finally:
        reopened.close()


async def test_schema_1_rows_are_resealed_with_their_times_bound(tmp_path: Path) -> None:
    paths = _v1_home(tmp_path)
    settings = load_settings(paths)
    store = open_store(paths, settings, clock=lambda: V1_NOW)
    try:
        assert len(await store.export()) == 6  # runs after the re-seal (queued first)
    finally:
        store.close()
    versions = _column(paths, "SELECT hex(substr(payload, 1, 1)) FROM records")
    assert versions == [f"{ENVELOPE_VERSION:02X}"] * 6
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    with conn:
        conn.execute("UPDATE records SET expires_at = expires_at + 1e9 WHERE seq = 3")
    conn.close()
    far = V1_NOW + 400 * 86400.0
    store = open_store(paths, settings, clock=lambda: far)
    try:
        result = await store.sweep()
        assert (result.expired, result.quarantined) == (5, 1)
        assert (await store.stats()).total == 0
    finally:
        store.close()


# --- item 3: permits that are not this installation's ------------------------------------------


class _LookAlike:
    """Everything the store used to need of a permit."""

    categories = frozenset({"operation_logs", "mac_addresses"})
    consent_ids = {"operation_logs": "x", "mac_addresses": "x"}  # noqa: RUF012
    policy_versions = {"operation_logs": "1.1", "mac_addresses": "1.1"}  # noqa: RUF012
    policy_version = "1.1"
    valid = True

    def require(self, category: str) -> None:
        del category


async def test_a_look_alike_permit_is_refused(store, permit) -> None:
    record = _record(permit)
    with pytest.raises(ForeignPermit):
        await store.append([record], _LookAlike())  # type: ignore[arg-type]
    with pytest.raises(ForeignPermit):
        await store.append([], _LookAlike())  # type: ignore[arg-type]
    assert (await store.stats()).total == 0


async def test_a_permit_of_another_installation_is_refused(store, permit, tmp_path: Path) -> None:
    other = resolve_paths(tmp_path / "other-home")
    other_gate = open_installation_gate(other, load_settings(other))
    other_gate.grant(["operation_logs"], method="api")
    borrowed = other_gate.permit(["operation_logs"])
    with pytest.raises(ForeignPermit):
        await store.append([_record(borrowed)], borrowed)
    assert (await store.stats()).total == 0
    await store.append([_record(permit)], permit)  # this installation's permit still works
    assert (await store.stats()).total == 1


async def test_a_permit_cannot_be_widened(store, gate) -> None:
    narrow = gate.permit(["diagnostics"])
    with pytest.raises(AttributeError):
        narrow.categories = frozenset(CATALOG)
    with pytest.raises(AttributeError):
        del narrow.categories
    # a copy with other contents is not sealed by this gate
    forged = object.__new__(Permit)
    for name in ("permit_id", "_token", "_seal", "policy_versions", "policy_version"):
        object.__setattr__(forged, name, getattr(narrow, name))
    wide = dict.fromkeys(("diagnostics", "operation_logs"), narrow.consent_ids["diagnostics"])
    object.__setattr__(forged, "consent_ids", wide)
    object.__setattr__(forged, "categories", frozenset(wide))
    with pytest.raises(ForeignPermit):
        await store.append([_record(narrow, "diagnostics")], forged)
    assert (await store.stats()).total == 0


async def test_unknown_categories_and_odd_columns_are_refused(store, permit) -> None:
    good = _record(permit)
    odd = [
        Record(category="browsing_history", consent_id="x", policy_version="1.1", body={}),
        Record(**{**_fields(good), "record_id": "C0:57:4B:00:00:01"}),
        Record(**{**_fields(good), "record_id": "C0574B000001"}),
        Record(**{**_fields(good), "record_id": "a|b"}),
        Record(**{**_fields(good), "record_id": ""}),
        Record(**{**_fields(good), "created_at": float("nan")}),
        Record(**{**_fields(good), "created_at": float("inf")}),
        Record(**{**_fields(good), "created_at": "yesterday"}),
    ]
    for record in odd:
        # alone (the one-record path of append) and with another record (the general path)
        for records in ([record], [record, good], [good, record]):
            with pytest.raises(UsageError):
                await store.append(records, permit)
    assert (await store.stats()).total == 0


def _fields(record: Record) -> dict[str, Any]:
    return {
        name: getattr(record, name)
        for name in ("record_id", "category", "created_at", "consent_id", "policy_version", "body")
    }


async def test_schema_1_rows_holding_a_mac_are_scrubbed_when_resealed(tmp_path: Path) -> None:
    # a row sealed (envelope version 1) before the store scrubbed MAC-shaped text
    paths = _v1_home(tmp_path)
    settings = load_settings(paths)
    keys = open_key_store(paths)
    key_id = 2  # device_info's data key in v1-home
    dek = keys.data_key(key_id)
    assert dek is not None
    record_id = "01a231430fbc7fffffffffffffffffff"
    plaintext = orjson.dumps(
        {"c": "x", "p": "1.1", "b": {"firmware": "fw-C0:57:4B:00:00:01", "n": 99}}
    )
    nonce = os.urandom(12)
    ad = legacy_associated_data(record_id, "device_info", key_id)
    payload = b"\x01" + nonce + AESGCM(dek.key).encrypt(nonce, plaintext, ad)
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    with conn:
        conn.execute(
            "INSERT INTO records (record_id, category, key_id, created_at, expires_at, payload) "
            "VALUES (?, 'device_info', ?, ?, ?, ?)",
            (record_id, key_id, V1_NOW, V1_NOW + 86400.0, payload),
        )
    conn.close()
    store = open_store(paths, settings, clock=lambda: V1_NOW)
    try:
        (kept,) = [r for r in await store.export() if r.record_id == record_id]
    finally:
        store.close()
    assert kept.body == {"firmware": "fw-[MAC]", "n": 99}
