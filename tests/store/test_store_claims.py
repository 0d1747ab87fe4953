"""Claims live in the writer's memory: a claim writes no row; only ``rejected`` is on disk.

Real SQLite files, a real key store and gate (tests/store/conftest.py); the database is read
with a second, plain sqlite3 connection to see what is on disk.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from wking_device.crypto import Sealer
from wking_device.store import DB_FILE, PlaintextReader, key_scope, open_store
from wking_device.upload._otlp import encode_record

if TYPE_CHECKING:
    from collections.abc import Callable

    from wking_device.config import Paths, Settings
    from wking_device.consent import Permit
    from wking_device.models import Record
    from wking_device.store import RecordStore


def _on_disk(paths: Paths) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """(record id, state) of every row, and the meta table, as another reader sees them."""
    with contextlib.closing(sqlite3.connect(paths.data_dir / DB_FILE)) as conn:
        rows = conn.execute("SELECT record_id, state FROM records ORDER BY seq").fetchall()
        meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
    return rows, meta


async def test_a_claim_writes_no_row_and_a_reader_still_sees_the_count(
    store: RecordStore, paths: Paths, settings: Settings, permit: Permit, make_record: Any
) -> None:
    records = [make_record(n=i) for i in range(6)]
    await store.append(records, permit)
    claimed = await store.claim(4)
    assert [r.record_id for r in claimed] == [r.record_id for r in records[:4]]
    rows, meta = _on_disk(paths)
    assert {state for _, state in rows} == {0}  # no row was rewritten to "claimed"
    assert meta["claimed"] == "4"
    # claims are not handed out twice, oldest first
    assert [r.record_id for r in await store.claim(10)] == [r.record_id for r in records[4:]]
    stats = await store.stats()
    assert (stats.total, stats.pending, stats.claimed) == (6, 0, 6)
    reader = open_store(paths, settings, readonly=True)
    try:
        seen = await reader.stats()
        assert (seen.total, seen.pending, seen.claimed) == (6, 0, 6)
    finally:
        reader.close()


async def test_claims_made_by_a_writer_that_died_are_sent_again(
    paths: Paths, settings: Settings, gate: Any, permit: Permit, make_record: Any
) -> None:
    del gate
    store = open_store(paths, settings)
    records = [make_record(n=i) for i in range(5)]
    try:
        await store.append(records, permit)
        assert len(await store.claim(3)) == 3
        assert await store.ack([records[0].record_id]) == 1
    finally:
        store.close()  # a crash: two records claimed and never acknowledged
    reopened = open_store(paths, settings)
    try:
        assert _on_disk(paths)[1].get("claimed") is None  # the new writer holds no claims
        again = await reopened.claim(10)
        assert [r.record_id for r in again] == [r.record_id for r in records[1:]]
    finally:
        reopened.close()


async def test_release_forgets_the_claim_and_reject_is_stored(
    store: RecordStore, paths: Paths, permit: Permit, make_record: Any
) -> None:
    records = [make_record(n=i) for i in range(4)]
    await store.append(records, permit)
    ids = [r.record_id for r in await store.claim(4)]
    assert await store.release(ids[:2]) == 2
    assert await store.release(ids[:2]) == 0  # not claimed any more
    assert await store.reject(ids[2:3]) == 1
    assert await store.reject(ids[:1]) == 0  # not claimed: nothing set aside
    rows, _ = _on_disk(paths)
    assert dict(rows)[ids[2]] == 2  # rejected is a state on disk
    assert [r.record_id for r in await store.claim(10)] == ids[:2]
    stats = await store.stats()
    assert (stats.pending, stats.claimed, stats.rejected) == (0, 3, 1)


async def test_an_ack_never_deletes_a_new_row_that_reuses_a_claimed_rows_number(
    store: RecordStore, paths: Paths, settings: Settings, permit: Permit, make_record: Any
) -> None:
    # SQLite gives the highest row number again once its row is deleted: a claimed row purged
    # while in flight, then a new append, must not make the late ack delete the new record
    keep = make_record("diagnostics", n=0)
    doomed = make_record("device_info", n=1)
    await store.append([keep], permit)
    await store.append([doomed], permit)
    assert [r.record_id for r in await store.claim(10)] == [keep.record_id, doomed.record_id]
    await store.release([keep.record_id])
    await store.purge("device_info")  # withdrawn while its record was in flight
    late = make_record("operation_logs", n=2)
    await store.append([late], permit)
    assert await store.ack([doomed.record_id]) == 0
    stats = await store.stats()
    assert stats.by_category == {"diagnostics": 1, "operation_logs": 1}
    reader = open_store(paths, settings, readonly=True)  # counts the bytes afresh
    try:
        assert stats.bytes == (await reader.stats()).bytes
    finally:
        reader.close()
    assert {r.record_id for r in await store.claim(10)} == {keep.record_id, late.record_id}


async def test_claim_opened_gives_each_records_scope_and_plaintext(
    store: RecordStore, permit: Permit, make_record: Any
) -> None:
    records = [
        make_record(n=1),
        make_record(speaker_mac="AA:BB:CC:DD:EE:01", n=2),  # sealed under the MAC scope
        make_record("diagnostics", text='é \u2028 "q" \\', x=1.5e-7, big=2**62, neg=-0.0),
    ]
    await store.append(records, permit)
    as_records = await store.claim(10)  # what was stored (MAC-shaped text redacted)
    await store.release(r.record_id for r in as_records)
    opened = await store.claim_opened(10)
    assert [o.record_id for o in opened] == [r.record_id for r in records]
    for record, row in zip(as_records, opened, strict=True):
        assert (row.category, row.scope, row.created_at) == (
            record.category,
            key_scope(record),
            record.created_at,
        )
        assert (row.consent_id, row.policy_version) == (record.consent_id, record.policy_version)
        assert row.body == orjson.dumps(record.body)  # byte for byte what the uploader sends
    assert (await store.stats()).claimed == 3
    assert await store.ack(o.record_id for o in opened) == 3
    assert (await store.stats()).bytes == 0  # the sizes the claim read were freed


async def test_a_claim_holds_no_collector_tracked_object_per_record_but_the_record(
    store: RecordStore, permit: Permit, make_record: Any
) -> None:
    # The uploader claims 2,000 records at a time: every object per record that the garbage
    # collector tracks (tuples) brings young collections closer, and they ran under the GIL in
    # the drain's busiest thread (two tuples per claim held in memory cost ~8 % of its CPU).
    n = 2000
    await store.append([make_record(n=i) for i in range(n)], permit)
    await store.stats()  # the writer thread lets go of the appended records
    gc.collect()
    gc.disable()
    try:
        before = len(gc.get_objects())
        opened = await store.claim_opened(n)
        grown = len(gc.get_objects()) - before
    finally:
        gc.enable()
    assert len(opened) == n
    assert grown < n * 1.25  # the OpenedRecord handed out, and nothing else per record
    assert await store.ack(row.record_id for row in opened) == n
    assert (await store.stats()).bytes == 0  # the bytes each claim held were freed


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"a": [1, 2.5, None, True, {"b": "x"}]},
        {"s": '\u00e9\U0001f600 " \\ \n', "n": -0.0, "f": 1e300},
        {"c": "nested keys named like the head", "p": 1, "b": {"c": 2}},
    ],
)
def test_the_plaintext_reader_slices_exactly_what_a_full_parse_gives(
    body: dict[str, Any], make_record: Callable[..., Record]
) -> None:
    from wking_device.store._schema import encode_body  # noqa: PLC0415 - the writer's side

    record = make_record(**body) if body else make_record()
    reader = PlaintextReader()
    plaintext = encode_body(record)
    for _ in range(2):  # parsed the first time, sliced from the known head the second
        consent_id, policy_version, raw = reader.split(plaintext)
        assert (consent_id, policy_version) == (record.consent_id, record.policy_version)
        assert raw == orjson.dumps(record.body)
    # another consent id: a different head, not mistaken for the known one
    other = encode_body(make_record(**body)).replace(
        orjson.dumps(record.consent_id), orjson.dumps(record.consent_id + "x"), 1
    )
    assert reader.split(other)[0] == record.consent_id + "x"
    assert encode_record(record)  # the body still encodes as the uploader sends it


async def test_claims_skip_claimed_rows_yet_find_released_and_renumbered_ones(
    store: RecordStore, permit: Permit, make_record: Any
) -> None:
    records = [make_record(n=i) for i in range(10)]
    await store.append(records, permit)
    ids = [r.record_id for r in records]
    assert [r.record_id for r in await store.claim(4)] == ids[:4]
    assert [r.record_id for r in await store.claim(2)] == ids[4:6]
    await store.release(ids[:2])  # below what the next claim would start after
    assert [r.record_id for r in await store.claim(10)] == ids[:2] + ids[6:]
    assert await store.ack(ids) == 10
    # the table is empty: SQLite numbers the next row 1 again, below every earlier claim
    late = make_record(n=99)
    await store.append([late], permit)
    assert [r.record_id for r in await store.claim_opened(10)] == [late.record_id]


@pytest.mark.parametrize("how", ["ack", "purge"])
async def test_claims_stay_oldest_first_when_new_rows_reuse_numbers_below_a_floor(
    store: RecordStore, permit: Permit, make_record: Any, how: str
) -> None:
    # found by the model test: one row claimed (the floor at its number), deleted, then two
    # new rows numbered from 1 again; a claim of one must give the older, not the one past
    # the floor
    first = make_record(n=0)
    await store.append([first], permit)
    assert [r.record_id for r in await store.claim(1)] == [first.record_id]
    if how == "ack":
        assert await store.ack([first.record_id]) == 1
    else:
        assert await store.purge(first.category) == 1
    older, newer = make_record(n=1), make_record(n=2)
    await store.append([older, newer], permit)
    assert [r.record_id for r in await store.claim(1)] == [older.record_id]
    assert [r.record_id for r in await store.claim_opened(1)] == [newer.record_id]


@pytest.mark.parametrize("plaintext", [b"not json", b'{"c":"x","p":"1"}', b"[1,2]"])
async def test_an_authentic_row_whose_plaintext_is_no_record_is_quarantined(
    paths: Paths,
    settings: Settings,
    gate: Any,
    permit: Permit,
    make_record: Any,
    plaintext: bytes,
) -> None:
    del gate
    store = open_store(paths, settings)
    good, odd = make_record(n=1), make_record(n=2)
    try:
        await store.append([good, odd], permit)
        key_id = next(iter(store.keys.data_key_ids()))
        data_key = store.keys.data_key(key_id)
        assert data_key is not None
    finally:
        store.close()
    sealer = Sealer(key_id, data_key.key)
    sealer.set_block(0, prefix=os.urandom(4))
    with contextlib.closing(sqlite3.connect(paths.data_dir / DB_FILE)) as conn:
        created, expires = conn.execute(
            "SELECT created_at, expires_at FROM records WHERE record_id = ?", (odd.record_id,)
        ).fetchone()
        payload = sealer.seal(
            odd.record_id, odd.category, plaintext, created_at=created, expires_at=expires
        )
        conn.execute("UPDATE records SET payload = ? WHERE record_id = ?", (payload, odd.record_id))
        conn.commit()
    reopened = open_store(paths, settings)
    try:
        assert [o.record_id for o in await reopened.claim_opened(10)] == [good.record_id]
        stats = await reopened.stats()
        assert (stats.total, stats.quarantined, stats.claimed) == (1, 1, 1)
    finally:
        reopened.close()


async def test_the_size_cap_never_evicts_a_claimed_record(
    paths: Paths, settings: Settings, gate: Any, permit: Permit, make_record: Any
) -> None:
    del gate
    store = open_store(paths, settings, max_bytes=40_000)
    try:
        diag = [make_record("diagnostics", n=i, pad="d" * 200) for i in range(60)]
        await store.append(diag, permit)
        in_flight = [r.record_id for r in await store.claim(10)]  # the oldest, first to go
        logs = [make_record("operation_logs", n=i, pad="o" * 200) for i in range(100)]
        for chunk in range(0, 100, 10):
            await store.append(logs[chunk : chunk + 10], permit)
        stats = await store.stats()
        assert stats.evicted > 0
        assert stats.claimed == 10
        assert await store.ack(in_flight) == 10  # all still there to acknowledge
    finally:
        store.close()


async def test_noting_claims_keeps_the_connections_durability(
    store: RecordStore, permit: Permit, make_record: Any
) -> None:
    await store.append([make_record(n=1)], permit)
    await store.release(r.record_id for r in await store.claim(1))  # two notes written
    # every commit still waits for the disk (synchronous = FULL)
    level = await store._submit(lambda: store._conn.execute("PRAGMA synchronous").fetchone()[0])
    assert level == 2
