from __future__ import annotations

import asyncio
import sqlite3
import stat
from typing import TYPE_CHECKING

import pytest

from wking_device.collect import RecordSink
from wking_device.config import resolve_paths
from wking_device.crypto import key_dir, open_key_store
from wking_device.errors import (
    ConsentRequired,
    KeyMissing,
    PermitRevoked,
    StorageError,
    StoreClosed,
    UsageError,
    WrongKey,
)
from wking_device.policy import CATALOG
from wking_device.store import DB_FILE, open_store

if TYPE_CHECKING:
    from wking_device.store import RecordStore


async def test_append_claim_ack_release_round_trip(store: RecordStore, make_record, permit) -> None:
    records = [make_record(n=i) for i in range(10)]
    await store.append(records, permit)
    claimed = await store.claim(4)
    assert [r.record_id for r in claimed] == [r.record_id for r in records[:4]]
    assert claimed[0] == records[0]
    again = await store.claim(100)
    assert [r.record_id for r in again] == [r.record_id for r in records[4:]]
    assert await store.claim(10) == []
    assert await store.release([records[5].record_id, "unknown"]) == 1
    assert [r.record_id for r in await store.claim(10)] == [records[5].record_id]
    assert await store.ack([r.record_id for r in claimed]) == 4
    stats = await store.stats()
    assert (stats.total, stats.pending, stats.claimed) == (6, 0, 6)
    assert stats.by_category == {"operation_logs": 6}
    assert stats.key_store == "key-file"


async def test_claims_become_pending_after_reopen(
    paths, settings, store, make_record, permit
) -> None:
    records = [make_record(n=i) for i in range(5)]
    await store.append(records, permit)
    assert len(await store.claim(5)) == 5
    await store.aclose()
    reopened = open_store(paths, settings)
    try:
        assert [r.record_id for r in await reopened.claim(10)] == [r.record_id for r in records]
        exported = await reopened.export()
        assert exported == records
    finally:
        reopened.close()


async def test_concurrent_appends_are_all_durable(
    paths, settings, store, make_record, permit
) -> None:
    records = [make_record(n=i) for i in range(300)]
    await asyncio.gather(*(store.append([r], permit) for r in records))
    await store.aclose()
    # read the database with plain sqlite3: every row is there and nothing is plaintext
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    rows = conn.execute("SELECT record_id, payload FROM records").fetchall()
    conn.close()
    assert {r for r, _ in rows} == {r.record_id for r in records}
    assert all(b"connect" not in payload for _, payload in rows)


async def test_nonces_never_repeat_across_reopen(
    paths, settings, store, make_record, permit
) -> None:
    await store.append([make_record(n=i) for i in range(50)], permit)
    await store.aclose()
    for _ in range(2):
        again = open_store(paths, settings)
        await again.append([make_record(n=i) for i in range(50)], permit)
        await again.aclose()
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    nonces = [bytes(p[1:13]) for (p,) in conn.execute("SELECT payload FROM records")]
    conn.close()
    assert len(nonces) == 150
    assert len(set(nonces)) == 150


async def test_permit_is_checked(store, gate, make_record, permit) -> None:
    narrow = gate.permit(["device_info"])
    with pytest.raises(ConsentRequired):
        await store.append([make_record("operation_logs")], narrow)
    gate.withdraw(["device_info"], method="api")
    with pytest.raises(PermitRevoked):
        await store.append([make_record("device_info")], narrow)
    with pytest.raises(PermitRevoked):
        await store.append([make_record("device_info")], permit)
    assert (await store.stats()).total == 0


async def test_withdrawal_purges_pending_records(store, gate, make_record, permit) -> None:
    detach = store.attach(gate)
    await store.append([make_record("device_info"), make_record("operation_logs")], permit)
    keys_before = store.keys.data_key_ids("device_info")
    assert keys_before
    gate.withdraw(["device_info"], method="api")
    # the purge is queued behind earlier work; stats run after it (FIFO)
    stats = await store.stats()
    assert stats.by_category == {"operation_logs": 1}
    assert stats.shredded == 1
    assert store.keys.data_key_ids("device_info") == {}
    assert all(store.keys.was_destroyed(k) for k in keys_before)
    detach()


async def test_missing_master_key_is_an_error_not_a_new_store(
    paths, settings, store, make_record, permit
) -> None:
    await store.append([make_record()], permit)
    await store.aclose()
    (key_dir(paths) / "master.key").unlink()
    with pytest.raises(KeyMissing) as info:
        open_store(paths, settings)
    assert info.value.exit_code == 6
    (key_dir(paths) / "keystore.json").unlink()
    with pytest.raises(KeyMissing):
        open_store(paths, settings)
    # the database was left alone
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 1
    conn.close()


async def test_foreign_key_store_is_wrong_key(paths, settings, store, tmp_path) -> None:
    await store.aclose()
    other = tmp_path / "other"
    foreign = open_key_store(resolve_paths(other))
    with pytest.raises(WrongKey):
        open_store(paths, settings, keys=foreign)


async def test_single_writer_and_readonly(paths, settings, store, make_record, permit) -> None:
    await store.append([make_record()], permit)
    # this process holds it (issue 12: it used to say "another process")
    with pytest.raises(StorageError, match="open already in this process"):
        open_store(paths, settings)
    reader = open_store(paths, settings, readonly=True)
    try:
        assert (await reader.stats()).total == 1
        assert len(await reader.export()) == 1
        with pytest.raises(UsageError):
            await reader.claim(1)
    finally:
        reader.close()


async def test_closed_store_refuses(store, make_record, permit) -> None:
    await store.aclose()
    with pytest.raises(StoreClosed):
        await store.append([make_record()], permit)
    with pytest.raises(StoreClosed):
        await store.stats()


async def test_files_are_private(paths, store, make_record, permit) -> None:
    await store.append([make_record()], permit)
    db = paths.data_dir / DB_FILE
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.data_dir.stat().st_mode) == 0o700


async def test_sweep_deletes_expired_and_destroys_old_keys(
    paths, settings, gate, make_record, permit
) -> None:
    now = [1_000_000.0]
    store = open_store(paths, settings, retention={"operation_logs": 100.0}, clock=lambda: now[0])
    try:
        old = make_record()
        object.__setattr__(old, "created_at", now[0])
        await store.append([old], permit)
        first_key = max(store.keys.data_key_ids("operation_logs"))
        # a new epoch starts after the rotation period
        now[0] += settings.storage.dek_rotation_days * 86400.0
        fresh = make_record()
        object.__setattr__(fresh, "created_at", now[0])
        await store.append([fresh], permit)
        assert len(store.keys.data_key_ids("operation_logs")) == 2
        result = await store.sweep()
        assert result.expired == 1
        assert result.keys_destroyed == 1
        assert store.keys.was_destroyed(first_key)
        assert await store.export() == [fresh]
    finally:
        store.close()


async def test_expired_records_are_neither_claimed_nor_exported_before_a_sweep(
    paths, settings, make_record, permit
) -> None:
    now = [1_000_000.0]
    store = open_store(paths, settings, retention={"operation_logs": 100.0}, clock=lambda: now[0])
    try:
        old = make_record()
        object.__setattr__(old, "created_at", now[0])
        await store.append([old], permit)
        now[0] += 50.0
        fresh = make_record()
        object.__setattr__(fresh, "created_at", now[0])
        await store.append([fresh], permit)
        now[0] += 60.0  # the first is past its retention, the second is not; nothing swept
        assert await store.export() == [fresh]
        assert await store.claim(10) == [fresh]
    finally:
        store.close()


async def test_duplicate_record_ids_are_idempotent(store, make_record, permit) -> None:
    record = make_record()
    await store.append([record], permit)
    await store.append([record, record], permit)
    assert (await store.stats()).total == 1


async def test_mac_fields_need_the_mac_permit_and_withdrawal_shreds_only_them(
    store, gate, make_record, permit
) -> None:
    store.attach(gate)
    no_macs = gate.permit(["operation_logs"])
    with_mac = make_record(speaker_mac="C4:7F:51:9A:2B:E3", op="connect")
    plain = make_record(op="scan")
    with pytest.raises(ConsentRequired):
        await store.append([with_mac], no_macs)
    await store.append([with_mac, plain], permit)
    assert len(store.keys.data_key_ids()) == 2  # separate data keys: with and without MACs
    gate.withdraw(["mac_addresses"], method="api")
    assert await store.export() == [plain]
    stats = await store.stats()
    assert stats.shredded == 1


async def test_rows_of_destroyed_keys_are_dropped_unknown_keys_quarantined(
    paths, settings, store, make_record, permit
) -> None:
    await store.append([make_record("device_info"), make_record("diagnostics")], permit)
    await store.append([make_record("operation_logs")], permit)
    # a crash right after the keys were destroyed, before the rows were deleted
    store.keys.destroy_data_keys(category="device_info")
    await store.aclose()
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    conn.execute("UPDATE records SET key_id = 999 WHERE category = 'diagnostics'")
    conn.commit()
    conn.close()
    reopened = open_store(paths, settings)
    try:
        assert [r.category for r in await reopened.export()] == ["operation_logs"]
        stats = await reopened.stats()
        assert (stats.total, stats.shredded, stats.quarantined) == (1, 1, 1)
    finally:
        reopened.close()


async def test_default_retention_comes_from_the_policy_catalog(store, make_record, permit) -> None:
    assert isinstance(store, RecordSink)
    record = make_record("device_info")
    await store.append([record], permit)
    days = CATALOG["device_info"].retention_days
    assert (await store.sweep(now=record.created_at + days * 86400 - 1)).expired == 0
    assert (await store.sweep(now=record.created_at + days * 86400)).expired == 1


async def test_a_bad_body_fails_only_its_own_append(store, make_record, permit) -> None:
    good = [make_record(n=i) for i in range(20)]
    bad = make_record(unserialisable={1, 2})
    results = await asyncio.gather(
        *(store.append([r], permit) for r in good[:10]),
        store.append([bad], permit),
        *(store.append([r], permit) for r in good[10:]),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results if r is not None] == ["UsageError"]
    assert {r.record_id for r in await store.export()} == {r.record_id for r in good}


async def test_a_withdrawal_the_store_never_saw_is_carried_out_on_attach(
    paths, settings, store, gate, make_record, permit
) -> None:
    # `wking consent withdraw` while another process held the store: the command could not
    # purge, and that process stopped before it saw the withdrawal.
    from wking_device.collect import open_installation_gate  # noqa: PLC0415

    await store.append([make_record("device_info"), make_record("operation_logs")], permit)
    keys_before = store.keys.data_key_ids("device_info")
    store.close()
    other = open_installation_gate(paths, settings)
    other.withdraw(["device_info"], method="api")
    agent_gate = open_installation_gate(paths, settings)
    async with open_store(paths, settings) as reopened:
        detach = reopened.attach(agent_gate)
        stats = await reopened.stats()
        assert stats.by_category == {"operation_logs": 1}
        assert stats.shredded == 1
        assert all(reopened.keys.was_destroyed(k) for k in keys_before)
        detach()
    del gate
