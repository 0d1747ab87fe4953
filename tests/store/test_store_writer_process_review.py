"""Adversarial checks of the store's writer process (``writer_process=True``).

Each test holds the child in a state a user or the system can put it in (stopped, killed, its
loop gone) and checks that the store keeps the promises it keeps with the writer thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sqlite3
import threading
from typing import TYPE_CHECKING

import pytest
from tests._waiting import until
from tests.store._measure import measured

from wking_device.errors import ConsentError, StoreClosed
from wking_device.store import DB_FILE, RecordStore, open_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from wking_device.config import Paths, Settings
    from wking_device.consent import ConsentGate, Permit
    from wking_device.models import Record


# short looks: some conditions (a batch held by the child) last only milliseconds
_until = functools.partial(until, within=20.0, every=0.002)
_measured = measured


async def test_the_size_cap_counts_what_a_stalled_process_holds(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
) -> None:
    """A batch that crosses the cap goes to the writer thread, which must count the held ones."""
    del gate
    cap = 200_000
    store = open_store(paths, settings, writer_process=True, max_bytes=cap)
    try:
        # evictable rows (the writer thread: each scope's first key is made there)
        await store.append(
            [make_record("diagnostics", i=i, pad="d" * 500) for i in range(100)], permit
        )
        await store.append([make_record(warm=True)], permit)
        appender = store._appender
        assert appender is not None
        await _until(lambda: appender.ready)
        pid = appender.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # it holds what it is sent, uncommitted
        try:
            held = []
            for b in range(2):
                batch = [make_record(b=b, i=i, pad="p" * 500) for i in range(60)]
                held.append(asyncio.ensure_future(store.append(batch, permit)))
                await _until(lambda b=b: len(appender._held) == b + 1)
            # this one would cross the cap with the held batches: the writer thread takes it
            crossing = [make_record(b=2, i=i, pad="p" * 500) for i in range(100)]
            await store.append(crossing, permit)
        finally:
            os.kill(pid, signal.SIGCONT)
        await asyncio.gather(*held)
        assert appender.acknowledged >= 2  # the held batches were committed by the child
        assert _measured(paths) <= cap
        assert (await store.stats()).evicted > 0
    finally:
        await store.aclose()


def _ids(paths: Paths) -> set[str]:
    with contextlib.closing(sqlite3.connect(paths.data_dir / DB_FILE)) as conn:
        return {row[0] for row in conn.execute("SELECT record_id FROM records")}


async def test_a_permit_revoked_while_the_process_holds_its_batch_fails_it(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
) -> None:
    """As with the writer thread: a permit revoked before the commit fails its group, unstored."""
    store = open_store(paths, settings, writer_process=True)
    try:
        await store.append([make_record(warm=True)], permit)
        appender = store._appender
        assert appender is not None
        await _until(lambda: appender.ready)
        pid = appender.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # the batch waits in the pipe, checked and not committed
        try:
            batch = [make_record(i=i) for i in range(40)]
            task = asyncio.ensure_future(store.append(batch, permit))
            await _until(lambda: bool(appender._held))
            gate.set_do_not_track(True)  # revokes every permit (nothing is purged)
            assert not permit.valid
        finally:
            os.kill(pid, signal.SIGCONT)
        with pytest.raises(ConsentError):
            await task
        assert not {record.record_id for record in batch} & _ids(paths)
        assert (await store.stats()).bytes == _measured(paths)
    finally:
        await store.aclose()


async def test_a_revoked_repeat_of_a_stored_record_does_not_delete_the_stored_one(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
) -> None:
    """The revoked group's rows go, not an earlier row with the same id (acknowledged before).

    The child ignores a record it already stored (by id); deleting the revoked group by id
    alone deleted the stored one, whose append had returned before the revocation.
    """
    store = open_store(paths, settings, writer_process=True)
    try:
        stored = make_record(kept=True)
        await store.append([stored], permit)
        appender = store._appender
        assert appender is not None
        await _until(lambda: appender.ready)
        await store.append([make_record(warm=True)], permit)
        await _until(lambda: appender.spawned == 1 and not appender._held)
        pid = appender.pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            again = gate.permit(["operation_logs"])
            fresh = [make_record(i=i) for i in range(40)]
            task = asyncio.ensure_future(store.append([stored, *fresh], again))
            await _until(lambda: bool(appender._held))
            gate.set_do_not_track(True)  # revokes every permit (nothing is purged)
        finally:
            os.kill(pid, signal.SIGCONT)
        with pytest.raises(ConsentError):
            await task
        ids = _ids(paths)
        assert stored.record_id in ids  # acknowledged before the revocation: kept
        assert not {record.record_id for record in fresh} & ids
        assert (await store.stats()).bytes == _measured(paths)
    finally:
        await store.aclose()


async def test_appends_made_at_open_wait_for_the_pending_withdrawals_as_with_the_thread(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    make_record: Callable[..., Record],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A withdrawal nobody carried out is carried out before any append of the new store.

    Withdrawn and granted again while no store ran: the open shreds the category whole (its
    old data key too). An append made meanwhile under the new grant must not be sealed with
    that old key by the writer process and then shredded after it was acknowledged.
    """
    gate.withdraw(["diagnostics"])  # carried out by the first store, which marks the ledger
    first = open_store(paths, settings, writer_process=False)
    old = make_record()
    await first.append([old], gate.permit(["operation_logs"]))  # the category's data key
    await first.aclose()
    gate.withdraw(["operation_logs"])
    gate.grant(["operation_logs"])
    again = gate.permit(["operation_logs"])
    entered, release = threading.Event(), threading.Event()
    finish = RecordStore._finish_withdrawals_sync

    def held_back(self: RecordStore) -> dict[str, int]:
        entered.set()
        release.wait(20.0)  # the writer thread is slow to get there (a big store, a slow disk)
        return finish(self)

    monkeypatch.setattr(RecordStore, "_finish_withdrawals_sync", held_back)
    store = open_store(paths, settings, writer_process=True)
    try:
        appender = store._appender
        assert appender is not None
        loop = asyncio.get_running_loop()
        appender.prepare(loop)  # as an append does: the child's output watched on the loop
        await _until(lambda: appender.ready and entered.is_set())
        queued = store._queue.qsize()  # what the writer thread did not take yet
        new = make_record()
        task = asyncio.ensure_future(store.append([new], again))
        # committed by the child, or queued for the writer thread (held back in the withdrawals)
        await _until(lambda: appender.acknowledged > 0 or store._queue.qsize() > queued)
        release.set()
        await task
        await store.stats()  # everything queued at the open has run
        assert new.record_id in _ids(paths)
        assert old.record_id not in _ids(paths)
    finally:
        release.set()
        await store.aclose()


async def test_an_append_made_after_a_purge_call_is_kept_as_with_the_thread(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Work runs in the order it was asked for: an append after ``purge()`` outlives it."""
    del gate
    entered, release = threading.Event(), threading.Event()
    purge = RecordStore._purge_sync

    def held_back(self: RecordStore, category: str) -> int:
        entered.set()
        release.wait(20.0)  # the writer thread is busy a while before it gets there
        return purge(self, category)

    monkeypatch.setattr(RecordStore, "_purge_sync", held_back)
    store = open_store(paths, settings, writer_process=True)
    try:
        before = make_record()
        await store.append([before], permit)  # the scope's data key, made by the thread
        appender = store._appender
        assert appender is not None
        await _until(lambda: appender.ready)
        purged = asyncio.ensure_future(store.purge("operation_logs"))
        await _until(entered.is_set)  # the writer thread is in the purge
        queued = store._queue.qsize()  # what it did not take yet
        after = make_record()
        task = asyncio.ensure_future(store.append([after], permit))
        await _until(lambda: appender.acknowledged > 0 or store._queue.qsize() > queued)
        release.set()
        assert await purged == 1
        await task
        assert _ids(paths) == {after.record_id}
        assert [r.record_id for r in await store.export()] == [after.record_id]
    finally:
        release.set()
        await store.aclose()


def test_two_event_loops_in_turn_then_two_closes_and_an_append_after(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
) -> None:
    """``asyncio.run`` twice on one store, ``close`` twice, an append after: as with the thread."""
    del gate
    store = open_store(paths, settings, writer_process=True)

    async def produce(run: int) -> list[str]:
        ids: list[str] = []

        async def producer(k: int) -> None:
            for i in range(5):
                record = make_record(run=run, k=k, i=i)
                await store.append([record], permit)
                ids.append(record.record_id)

        await asyncio.gather(*(producer(k) for k in range(40)))
        return ids

    first = asyncio.run(produce(1))
    appender = store._appender
    assert appender is not None
    pid = appender.pid
    second = asyncio.run(produce(2))  # another loop: the writer thread
    store.close()
    store.close()
    with pytest.raises(StoreClosed):
        asyncio.run(store.append([make_record()], permit))
    stored = sorted(_ids(paths))
    assert stored == sorted(first + second)
    assert pid is not None  # the first loop's appends went through a child
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # ended and reaped by the first close


async def test_bodies_near_the_pipe_size_are_stored_as_with_the_thread(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bodies about the pipe's size (1 MiB), escape sequences and MAC-shaped text in them."""
    del gate
    caplog.set_level(logging.INFO, logger="wking_device.store")
    store = open_store(paths, settings, writer_process=True)
    try:
        await store.append([make_record(warm=True)], permit)
        appender = store._appender
        assert appender is not None
        await _until(lambda: appender.ready)
        hostile = "\x1b[2J\x1b]0;owned\x07 AA:BB:CC:DD:EE:FF "
        sizes = [(1 << 20) - 4096, (1 << 20) - 200, 1 << 20, (1 << 20) + 100, 600_000]
        records = [make_record(n=n, text=hostile + "x" * n) for n in sizes]
        for record in records:  # one batch each
            await store.append([record], permit)
        exported = {r.record_id: r for r in await store.export()}
        for record, n in zip(records, sizes, strict=True):
            text = exported[record.record_id].body["text"]
            assert text.endswith("x" * n)
            assert "AA:BB:CC:DD:EE:FF" not in text  # scrubbed before it crosses, as before
        assert appender.pid is not None
        assert appender.acknowledged >= 1  # the child took those that fit its pipe
        assert appender.spawned == 1  # no child was stopped for a message it took part of
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        await store.aclose()
