"""The group commit of appends: batches per loop turn, one outcome per permit, FIFO, consent.

Real store, real consent gate, real SQLite file. Where a test needs the writer busy while appends
queue up, it queues a call that waits on an event (the writer runs queued work in FIFO order).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from typing import TYPE_CHECKING

import pytest
from tests.store._hold import hold_writer

from wking_device.errors import PermitRevoked, StoreClosed, UsageError
from wking_device.models import Record
from wking_device.store import DB_FILE, open_store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from wking_device.store import RecordStore


def _ids_on_disk(paths) -> set[str]:
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    try:
        return {row[0] for row in conn.execute("SELECT record_id FROM records")}
    finally:
        conn.close()


async def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10.0
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


@pytest.fixture(name="held")
def fixture_held(store: RecordStore) -> Iterator[threading.Event]:
    """Keep the writer busy (a queued call waiting on an event) until the event is set."""
    release = hold_writer(store)
    yield release
    release.set()


# the writer thread's batching (a writer process cuts turns into shorter batches)
@pytest.mark.parametrize("writer", ["thread"])
async def test_producers_resumed_together_share_one_commit(store, make_record, permit) -> None:
    before = store._commits
    records = [make_record(n=i) for i in range(200)]
    await asyncio.gather(*(store.append([record], permit) for record in records))
    # 200 single-record appends made in one turn of the loop: one transaction, not 200
    assert store._commits - before == 1
    assert (await store.stats()).total == 200


async def test_a_permit_revoked_while_queued_fails_only_its_own_group(
    paths, gate, store, held, make_record
) -> None:
    logs = gate.permit(["operation_logs"])
    info = gate.permit(["device_info"])
    kept = make_record("operation_logs")
    refused = make_record("device_info")
    ok_task = asyncio.ensure_future(store.append([kept], logs))
    bad_task = asyncio.ensure_future(store.append([refused], info))
    # both passed the checks at append time and wait in one batch behind the busy writer
    await _until(lambda: store._queue.qsize() >= 1)
    gate.withdraw(["device_info"], method="api")
    held.set()
    with pytest.raises(PermitRevoked):
        await bad_task
    await ok_task
    await store.aclose()
    assert _ids_on_disk(paths) == {kept.record_id}


async def test_an_append_made_before_a_claim_is_seen_by_it(store, make_record, permit) -> None:
    record = make_record()
    task = asyncio.ensure_future(store.append([record], permit))
    await asyncio.sleep(0)  # the append joined the loop's open batch; it is not queued yet
    claimed = await store.claim(10)
    assert [r.record_id for r in claimed] == [record.record_id]
    await task


async def test_a_cancelled_caller_does_not_fail_the_others(
    paths, store, held, make_record, permit
) -> None:
    records = [make_record(n=i) for i in range(5)]
    tasks = [asyncio.ensure_future(store.append([record], permit)) for record in records]
    await _until(lambda: store._queue.qsize() >= 1)
    tasks[2].cancel()
    held.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[2], asyncio.CancelledError)
    assert [r for i, r in enumerate(results) if i != 2] == [None] * 4
    await store.aclose()
    # the cancelled caller's record was already queued: it is committed (never half-written)
    assert _ids_on_disk(paths) == {record.record_id for record in records}


async def test_close_commits_the_open_batch_before_stopping(
    paths, settings, store, make_record, permit
) -> None:
    records = [make_record(n=i) for i in range(20)]
    tasks = [asyncio.ensure_future(store.append([record], permit)) for record in records]
    await asyncio.sleep(0)  # every append joined the open batch, none is queued yet
    store.close()
    assert await asyncio.gather(*tasks) == [None] * 20
    assert _ids_on_disk(paths) == {record.record_id for record in records}
    with pytest.raises(StoreClosed):
        await store.append([make_record()], permit)


async def test_appends_from_two_event_loops_are_all_committed(
    paths, store, make_record, permit
) -> None:
    mine = [make_record(n=i) for i in range(50)]
    theirs = [make_record(n=100 + i) for i in range(50)]

    def other_loop() -> None:
        async def run() -> None:
            await asyncio.gather(*(store.append([record], permit) for record in theirs))

        asyncio.run(run())

    thread = threading.Thread(target=other_loop)
    thread.start()
    await asyncio.gather(*(store.append([record], permit) for record in mine))
    await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive()
    await store.aclose()
    assert _ids_on_disk(paths) == {record.record_id for record in mine + theirs}


@pytest.mark.parametrize(
    "record_id",
    [
        "C0574B000001",  # 12 bare hex digits: a MAC
        "c0574b000001",
        "c0-57-4b-00-00-01",
        "xC0_57_4B_00_00_01",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0",  # 65 digits
    ],
)
async def test_ids_that_are_macs_or_too_long_are_still_refused(
    store, make_record, permit, record_id
) -> None:
    good = make_record()
    bad = Record(
        category=good.category,
        consent_id=good.consent_id,
        policy_version=good.policy_version,
        body=good.body,
        record_id=record_id,
    )
    with pytest.raises(UsageError):
        await store.append([bad], permit)
    assert (await store.stats()).total == 0


async def test_long_hex_ids_are_accepted(store, make_record, permit) -> None:
    good = make_record()
    ids = ["C0574B0000011", "0" * 13, "f" * 64, good.record_id]
    records = [
        Record(
            category=good.category,
            consent_id=good.consent_id,
            policy_version=good.policy_version,
            body=good.body,
            record_id=record_id,
        )
        for record_id in ids
    ]
    await store.append(records, permit)
    assert {r.record_id for r in await store.export()} == set(ids)


async def test_a_reopened_store_reads_what_batches_wrote(
    paths, settings, store, make_record, permit
) -> None:
    records = [make_record(n=i) for i in range(30)] + [make_record("device_info", n=99)]
    await asyncio.gather(*(store.append([record], permit) for record in records))
    await store.aclose()
    again = open_store(paths, settings)
    try:
        exported = await again.export()
    finally:
        await again.aclose()
    assert {r.record_id: r.body for r in exported} == {r.record_id: r.body for r in records}


@pytest.mark.parametrize("rows", [1, 15, 16, 17, 31, 100, 992, 993, 1000])
async def test_a_commit_padded_to_a_prepared_shape_stores_each_record_once(
    paths, store, make_record, permit, rows: int
) -> None:
    # sizes that are not a shape are padded with copies of the last row (ignored by SQLite);
    # past the largest shape the batch takes several statements in one transaction
    before = store._commits
    records = [make_record(n=i) for i in range(rows)]
    await store.append(records, permit)
    assert store._commits - before == 1
    stats = await store.stats()
    assert stats.total == rows
    assert _ids_on_disk(paths) == {record.record_id for record in records}
    exported = await store.export()
    assert sorted(r.body["n"] for r in exported) == list(range(rows))
    size = store._bytes
    assert size == store._measure()  # the size cap's count was not thrown off by the copies


async def test_a_padded_commit_whose_last_record_is_already_stored_keeps_the_count(
    store, make_record, permit
) -> None:
    last = make_record(n=-1)
    await store.append([last], permit)
    records = [make_record(n=i) for i in range(20)] + [last]  # 21 rows: padded to 32
    await store.append(records, permit)
    assert (await store.stats()).total == 21
    assert store._bytes == store._measure()


# the writer thread's batching (a writer process cuts turns into shorter batches)
@pytest.mark.parametrize("writer", ["thread"])
async def test_a_long_turn_is_cut_once_per_hand_over_rows(
    store, make_record, permit, held, paths
) -> None:
    # More appends in one turn than _HAND_OVER_ROWS (1,000 producers resumed by one commit):
    # the batch is queued as soon as it holds that many rows, the rest follows at the turn's
    # end: two batches here, not one (no overlap) and not more (each cut costs GIL hand-offs)
    from wking_device.store._batches import _HAND_OVER_ROWS  # noqa: PLC0415

    queued = store._queue.qsize()
    records = [make_record(n=i) for i in range(_HAND_OVER_ROWS + 88)]
    appends = asyncio.gather(*(store.append([record], permit) for record in records))
    await _until(lambda: store._open is None and store._queue.qsize() > queued)
    await asyncio.sleep(0)  # one more turn: nothing else is queued
    assert store._queue.qsize() - queued == 2
    assert not appends.done()  # nothing is acknowledged before its commit
    held.set()
    await appends
    assert _ids_on_disk(paths) >= {record.record_id for record in records}


# -- waking the callers of one commit --------------------------------------------------------


async def _wakes_per_turn(done: list[int], total: int) -> list[int]:
    """How many callers each turn of the loop resumed, until ``total`` have been.

    Bounded by time, not by turns: a turn with nothing to run takes microseconds, and a
    commit on a loaded machine can take longer than 10,000 of them.
    """
    counts: list[int] = []
    seen = len(done)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60.0
    while loop.time() < deadline:
        if seen == total:
            return counts
        await asyncio.sleep(0)
        counts.append(len(done) - seen)
        seen = len(done)
    raise AssertionError(f"{total - seen} callers never resumed")


@pytest.mark.parametrize("writer", ["thread", "process"])
async def test_one_commit_resumes_its_callers_a_chunk_a_turn_in_order(
    store, make_record, permit
) -> None:
    # 1,000 producers acknowledged by one commit used to be woken in one go: 2,000 objects
    # the garbage collector tracks, past its threshold, until full collections stopped the
    # loop. They are woken at most _WAKE_CHUNK a turn, in the order they appended.
    from wking_device.store._batches import _WAKE_CHUNK  # noqa: PLC0415

    total = 3 * _WAKE_CHUNK + 10
    done: list[int] = []

    async def produce(n: int) -> None:
        await store.append([make_record(n=n)], permit)
        done.append(n)

    tasks = [asyncio.create_task(produce(n)) for n in range(total)]
    counts = await _wakes_per_turn(done, total)
    await asyncio.gather(*tasks)
    assert max(counts) <= _WAKE_CHUNK
    assert done == sorted(done)  # first appended, first resumed
    assert (await store.stats()).total == total


async def test_later_acknowledgements_wait_behind_the_earlier_ones() -> None:
    from wking_device.store._batches import _WAKE_CHUNK, _WAKING, _settle_groups  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    first = [loop.create_future() for _ in range(2 * _WAKE_CHUNK + 1)]
    second = [loop.create_future() for _ in range(3)]
    failed = [loop.create_future() for _ in range(2)]
    _settle_groups([(first, None)])
    _settle_groups([(second, None), (failed, PermitRevoked("withdrawn"))])
    assert sum(f.done() for f in first) == _WAKE_CHUNK  # the rest in the next turns
    assert not any(f.done() for f in second + failed)
    await asyncio.sleep(0)
    assert sum(f.done() for f in first) == 2 * _WAKE_CHUNK
    await asyncio.sleep(0)
    assert all(f.done() for f in first + second + failed)
    assert all(f.exception() is None for f in first + second)
    assert all(isinstance(f.exception(), PermitRevoked) for f in failed)
    await asyncio.sleep(0)  # a turn with no one left to wake
    assert loop not in _WAKING  # nothing kept once everyone is resumed
    alone = [loop.create_future() for _ in range(3)]
    _settle_groups([(alone, None)])
    assert all(f.done() for f in alone)  # no one waits: woken at once


def test_waking_callers_of_a_closed_loop_neither_raises_nor_keeps_them() -> None:
    from wking_device.store._batches import _WAKE_CHUNK, _WAKING, _settle_groups  # noqa: PLC0415

    loop = asyncio.new_event_loop()
    futures = [loop.create_future() for _ in range(_WAKE_CHUNK + 5)]
    loop.close()
    _settle_groups([(futures, None)])  # a writer's acknowledgement after the loop ended
    assert loop not in _WAKING
    assert sum(f.done() for f in futures) == _WAKE_CHUNK


async def test_one_turn_of_waking_stays_under_the_collectors_threshold() -> None:
    # what the chunk is for: the objects one turn of waking allocates must not set off a
    # collection of their own (its survivors, the pending wake-ups, would be promoted)
    import gc  # noqa: PLC0415

    from wking_device.store._batches import _settle_groups  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(1_000)]
    waiters = [asyncio.ensure_future(future) for future in futures]
    await asyncio.sleep(0)  # each waiter is now parked on its future
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        _settle_groups([(futures, None)])
        allocated = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert 0 < allocated < gc.get_threshold()[0]
    await asyncio.gather(*waiters)


def test_a_loop_closed_with_callers_still_waiting_is_not_kept() -> None:
    from wking_device.store._batches import _WAKE_CHUNK, _WAKING, _settle_groups  # noqa: PLC0415

    loop = asyncio.new_event_loop()
    futures = [loop.create_future() for _ in range(_WAKE_CHUNK + 1)]
    _settle_groups([(futures, None)])  # one left for the next turn, which never comes
    loop.close()
    assert loop in _WAKING
    other = asyncio.new_event_loop()
    try:
        _settle_groups([([other.create_future()], None)])  # the next acknowledgement anywhere
        assert loop not in _WAKING
    finally:
        other.close()
