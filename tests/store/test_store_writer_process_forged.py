"""The store's writer process answering what it should not, or started somewhere hostile.

A child that writes a malformed acknowledgement (a bug, or something writing into its pipe) is
stopped and every batch it held goes to the writer thread: no caller is left waiting, nothing
acknowledged is lost or stored twice. Real child processes, real signals, real SQLite files.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from typing import TYPE_CHECKING

import pytest
from tests._waiting import until
from tests.store.conftest import GRANTED

from wking_device._store_child import ACK, BATCH_NO
from wking_device.errors import ConsentError
from wking_device.store import DB_FILE, open_store
from wking_device.store._batches import _Call

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from wking_device.config import Paths, Settings
    from wking_device.consent import ConsentGate, Permit
    from wking_device.models import Record
    from wking_device.store import RecordStore

_until = functools.partial(until, within=20.0, every=0.002)


def _ids(paths: Paths) -> list[str]:
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    try:
        return [row[0] for row in conn.execute("SELECT record_id FROM records")]
    finally:
        conn.close()


async def test_an_acknowledgement_naming_a_batch_twice_stops_the_process_and_loses_nothing(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
    caplog,
) -> None:
    del gate
    caplog.set_level(logging.ERROR, logger="wking_device.store")
    store = open_store(paths, settings, writer_process=True)
    try:
        await store.append([make_record(warm=True)], permit)  # the writer thread makes the key
        appender = store._appender
        await _until(lambda: appender.ready)
        pid = appender.pid
        os.kill(pid, signal.SIGSTOP)  # it holds what it is sent, acknowledging nothing
        try:
            records = [make_record(n=1), make_record(n=2)]
            first = asyncio.ensure_future(store.append([records[0]], permit))
            await _until(lambda: len(appender._held) == 1)
            second = asyncio.ensure_future(store.append([records[1]], permit))
            await _until(lambda: len(appender._held) == 2)
            number = min(appender._held)
            # written into the child's own output pipe, as a buggy child would: one batch twice
            with open(f"/proc/{pid}/fd/1", "wb", buffering=0) as pipe:  # noqa: PTH123, ASYNC230
                pipe.write(ACK.pack(2, 1, 1, 1, 100) + BATCH_NO.pack(number) * 2)
            # a guard against a hang, not a timed assertion: both callers must hear back
            await asyncio.wait_for(asyncio.gather(first, second), timeout=30.0)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        await _until(lambda: appender.pid != pid)
    finally:
        store.close()
    stored = _ids(paths)
    assert sorted(stored) == sorted({*stored})
    assert {r.record_id for r in records} <= set(stored)
    assert ["malformed acknowledgement" in r.getMessage() for r in caplog.records] == [True]


_ISOLATED_PARENT = textwrap.dedent(
    """
    import asyncio, sys, time
    from wking_device.collect._install import open_installation_gate
    from wking_device.config import load_settings, resolve_paths
    from wking_device.models import Record
    from wking_device.store import open_store

    paths = resolve_paths(sys.argv[1])
    settings = load_settings(paths)
    permit = open_installation_gate(paths, settings).permit(["operation_logs"])
    store = open_store(paths, settings, writer_process=True)
    appender = store._appender

    async def main():
        deadline = time.monotonic() + 60
        while not appender.acknowledged and not appender._disabled:
            assert time.monotonic() < deadline, "the writer process never answered"
            record = Record(category="operation_logs", policy_version=permit.policy_version,
                            consent_id=permit.consent_ids["operation_logs"], body={"op": "x"})
            await store.append([record], permit)
            await asyncio.sleep(0.01)
        print(appender.acknowledged, appender.spawned, flush=True)

    asyncio.run(main())
    store.close()
    """
)


def test_a_parent_run_isolated_starts_its_writer_process_isolated(
    paths: Paths, settings: Settings, gate: ConsentGate, tmp_path: Path
) -> None:
    del gate, settings  # granted in the fixture: the parent asks for its permit
    hostile = tmp_path / "hostile"
    (hostile / "wking_device").mkdir(parents=True)
    marker = tmp_path / "planted-code-ran"
    (hostile / "wking_device" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n", encoding="utf-8"
    )
    # python -I: the parent ignores PYTHONPATH (and the user's site-packages); so must its child
    result = subprocess.run(
        [sys.executable, "-I", "-c", _ISOLATED_PARENT, str(paths.home)],
        env={**os.environ, "PYTHONPATH": str(hostile)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    acknowledged, _ = map(int, result.stdout.split())
    assert not marker.exists()
    assert acknowledged >= 1  # the writer process did commit appends


async def test_a_revoked_group_the_dead_child_committed_unacknowledged_is_not_kept(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
) -> None:
    """As with the writer thread: a caller told its permit was revoked has nothing stored."""
    store = open_store(paths, settings, writer_process=True)
    try:
        await store.append([make_record(warm=True)], permit)
        appender = store._appender
        await _until(lambda: appender.ready)
        pid = appender.pid
        os.kill(pid, signal.SIGSTOP)
        batch = [make_record(i=i) for i in range(40)]
        task = asyncio.ensure_future(store.append(batch, permit))
        await _until(lambda: bool(appender._held))
        wanted = {record.record_id for record in batch}
        # from here to the next await the loop runs nothing: garbage ahead of the child's
        # acknowledgement, the child commits, and the permit is revoked before the loop reads
        with open(f"/proc/{pid}/fd/1", "wb", buffering=0) as pipe:  # noqa: PTH123, ASYNC230
            pipe.write(ACK.pack(1, 1, 1, 1, 100) + BATCH_NO.pack(10**9))
        os.kill(pid, signal.SIGCONT)
        while not wanted <= set(_ids(paths)):  # committed by the child, not yet acknowledged
            os.sched_yield()
        gate.set_do_not_track(True)  # revokes every permit (nothing is purged)
        with pytest.raises(ConsentError):
            await task
        await store.stats()  # the writer thread has run what was queued before
        assert not wanted & set(_ids(paths))
    finally:
        await store.aclose()


async def _two_commits_then_death(
    store: RecordStore,
    paths: Paths,
    permit: Permit,
    make_record: Callable[..., Record],
) -> tuple[list[asyncio.Future[None]], set[str]]:
    """Two batches the child commits one after the other, then it dies; no acknowledgement read.

    Returns the callers' appends (pending) and their record ids; the loop takes the child's end
    once the caller has done what it wants before the hand-back (see ``_hand_back_now``).
    """
    await store.append([make_record(warm=True)], permit)  # the writer thread makes the key
    appender = store._appender
    await _until(lambda: appender.ready)
    loop = asyncio.get_running_loop()
    fd = appender._fds[1]
    acknowledged = appender.acknowledged
    loop.remove_reader(fd)  # from here the parent reads nothing from the child
    tasks: list[asyncio.Future[None]] = []
    wanted: set[str] = set()
    for n in range(2):
        batch = [make_record(n=n, i=i) for i in range(20)]
        ids = {record.record_id for record in batch}
        tasks.append(asyncio.ensure_future(store.append(batch, permit)))
        await _until(lambda ids=ids: ids <= set(_ids(paths)))  # committed, in its own commit
        wanted |= ids
    assert len(appender._held) == 2  # both sent to the child, neither acknowledged
    os.kill(appender.pid, signal.SIGKILL)
    # its acknowledgements never arrive: taken out of the pipe, up to its end
    while True:
        try:
            if not os.read(fd, 1 << 16):
                break
        except BlockingIOError:
            await asyncio.sleep(0.002)
    assert appender.acknowledged == acknowledged
    return tasks, wanted


def _hand_back_now(store: RecordStore) -> None:
    """Have the loop see the dead child's end (its pipe at its end) and hand back its batches."""
    appender = store._appender
    asyncio.get_running_loop().add_reader(appender._fds[1], appender._on_readable)


def _bytes_kept(paths: Paths) -> int:
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    try:
        (size,) = conn.execute(
            "SELECT COALESCE(SUM(length(payload)), 0) + 64 * COUNT(*) FROM records"
        ).fetchone()
        return int(size)
    finally:
        conn.close()


async def test_revoked_groups_of_several_commits_a_dead_child_made_are_not_kept(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
) -> None:
    """Two commits whose acknowledgements were never read: both are found, both deleted."""
    store = open_store(paths, settings, writer_process=True)
    try:
        tasks, wanted = await _two_commits_then_death(store, paths, permit, make_record)
        kept = set(_ids(paths)) - wanted
        gate.set_do_not_track(True)  # revokes every permit (nothing is purged)
        _hand_back_now(store)
        for task in tasks:
            with pytest.raises(ConsentError):
                await task
        stats = await store.stats()  # the writer thread has run what was queued before
        assert set(_ids(paths)) == kept  # the records acknowledged before are still there
        assert stats.bytes == _bytes_kept(paths)
    finally:
        await store.aclose()


async def test_batches_a_dead_child_committed_under_a_valid_permit_are_acknowledged_once(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
) -> None:
    """Settled as their acknowledgement would have been: kept once, counted once, not rewritten."""
    del gate
    store = open_store(paths, settings, writer_process=True)
    try:
        tasks, wanted = await _two_commits_then_death(store, paths, permit, make_record)
        rows = _rows(paths)
        _hand_back_now(store)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30.0)  # a guard against a hang
        stats = await store.stats()
        assert _rows(paths) == rows  # the child's rows, as it committed them
        assert wanted <= {record_id for _, record_id in rows}
        assert stats.total == len(rows)
        assert stats.bytes == _bytes_kept(paths)
        # the next child takes batches again, and they are acknowledged as usual
        appender = store._appender
        await store.append([make_record(after=0)], permit)  # starts the next child
        await _until(lambda: appender.ready)
        acknowledged = appender.acknowledged
        await store.append([make_record(after=1)], permit)
        assert appender.acknowledged == acknowledged + 1
        assert (await store.stats()).bytes == _bytes_kept(paths)
    finally:
        await store.aclose()


def _rows(paths: Paths) -> list[tuple[int, str]]:
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    try:
        return conn.execute("SELECT seq, record_id FROM records ORDER BY seq").fetchall()
    finally:
        conn.close()


async def test_a_revoked_duplicate_the_child_ignored_keeps_the_row_acknowledged_before(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
) -> None:
    """A commit that inserted nothing deletes nothing (its row number is not a new row's)."""
    store = open_store(paths, settings, writer_process=True)
    try:
        # rows numbered past the meta table's (a connection's last row number may be there)
        await store.append([make_record(warm=i) for i in range(20)], permit)
        appender = store._appender
        await _until(lambda: appender.ready)
        acknowledged = appender.acknowledged
        await store.append([make_record(n=1)], permit)  # the child inserts a row
        assert appender.acknowledged == acknowledged + 1
        record = make_record(n=2)
        appender.hold()  # the writer thread stores this one, numbered after the child's row
        try:
            await store.append([record], permit)
        finally:
            appender.resume()
        assert appender.acknowledged == acknowledged + 1
        pid = appender.pid
        os.kill(pid, signal.SIGSTOP)
        task = asyncio.ensure_future(store.append([record], permit))  # a retry: ignored by id
        await _until(lambda: bool(appender._held))
        os.kill(pid, signal.SIGCONT)
        # the loop runs nothing until the next await: the child commits (inserting nothing)
        # and acknowledges, and the permit is revoked before the loop reads the acknowledgement
        while not select.select([appender._fds[1]], [], [], 1.0)[0]:
            pass
        gate.set_do_not_track(True)
        with pytest.raises(ConsentError):
            await task
        await store.stats()  # the writer thread has run what was queued before
        assert record.record_id in _ids(paths)  # its first append was acknowledged
    finally:
        await store.aclose()


async def test_the_next_child_takes_nothing_until_the_dead_childs_commits_are_read(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
) -> None:
    """The next child's first commit replaces the note: it must come after the writer read it."""
    store = open_store(paths, settings, writer_process=True)
    release = threading.Event()
    try:
        tasks, wanted = await _two_commits_then_death(store, paths, permit, make_record)
        gate.set_do_not_track(True)  # revokes the permit of the dead child's batches
        gate.set_do_not_track(False)
        fresh = gate.permit(GRANTED)
        await store.stats()  # the writer thread has read the ledger as it is now
        store._queue.put(_Call(release.wait))  # the writer thread is busy (a long export, say)
        appender = store._appender
        dead = appender.pid
        _hand_back_now(store)  # queued behind it
        await _until(lambda: appender.pid is None)  # the loop saw its end
        # starts the next child (this batch: the writer thread, it was not ready)
        first = asyncio.ensure_future(store.append([make_record(warm=True)], fresh))
        await _until(lambda: appender.ready)
        assert appender.pid != dead
        queued = store._queue.qsize()
        later = [make_record(later=i) for i in range(5)]
        task = asyncio.ensure_future(store.append(later, fresh))
        ids = {record.record_id for record in later}
        # either the next child committed them (overwriting the note) or they wait for the writer
        await _until(lambda: store._queue.qsize() > queued or ids <= set(_ids(paths)))
        release.set()
        await asyncio.wait_for(asyncio.gather(first, task), timeout=30.0)  # against a hang
        for old in tasks:
            with pytest.raises(ConsentError):
                await old
        stats = await store.stats()
        assert not wanted & set(_ids(paths))
        assert ids <= set(_ids(paths))
        assert stats.bytes == _bytes_kept(paths)
    finally:
        release.set()
        await store.aclose()
