"""The store's writer process (``writer_process=True``): real child processes, real signals.

What is tested is what a process adds to the store's promises: every acknowledged append is
stored exactly once whatever happens to the child (killed, unable to start, ending with its
parent, stopped by a withdrawal); a withdrawal stops the child that held the withdrawn keys
before it returns; nonces stay unique between the child and the writer thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
from tests._waiting import until
from tests.store._measure import measured

from wking_device._store_child import ACK, BATCH_NO
from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.errors import ConsentError, StoreClosed
from wking_device.models import Record
from wking_device.store import DB_FILE, open_store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from wking_device.config import Paths, Settings
    from wking_device.consent import ConsentGate, Permit
    from wking_device.store import RecordStore


def _rows(paths: Paths) -> list[tuple[str, str, bytes]]:
    conn = sqlite3.connect(paths.data_dir / DB_FILE)
    try:
        return conn.execute("SELECT record_id, category, payload FROM records").fetchall()
    finally:
        conn.close()


# short looks: some conditions (a batch held by the child) last only milliseconds
_until = functools.partial(until, within=20.0, every=0.002)
_measured = measured


def _cmdline(pid: int) -> bytes:
    with open(f"/proc/{pid}/cmdline", "rb") as f:  # noqa: PTH123
        return f.read()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(name="pstore")
def fixture_pstore(paths: Paths, settings: Settings, gate: ConsentGate) -> Iterator[RecordStore]:
    del gate  # the gate creates the key store first, as the installation does
    store = open_store(paths, settings, writer_process=True)
    yield store
    store.close()


async def _produce(
    store: RecordStore,
    permit: Permit,
    make_record: Callable[..., Record],
    *,
    producers: int,
    each: int,
    category: str = "operation_logs",
) -> list[str]:
    """``producers`` tasks appending ``each`` records one at a time; the ids acknowledged."""
    acknowledged: list[str] = []

    async def producer(k: int) -> None:
        for i in range(each):
            record = make_record(category, k=k, i=i)
            await store.append([record], permit)
            acknowledged.append(record.record_id)

    await asyncio.gather(*(producer(k) for k in range(producers)))
    return acknowledged


async def _warm(store: RecordStore, permit: Permit, make_record: Callable[..., Record]) -> None:
    """One append per category used (the writer thread makes each scope's first data key)."""
    for category in ("operation_logs", "device_info"):
        await store.append([make_record(category, warm=True)], permit)
    await _until(lambda: store._appender.ready)  # started when the store opened


async def _mid_stream(
    store: RecordStore,
    permit: Permit,
    make_record: Callable[..., Record],
    *,
    each: int,
    acknowledged: int,
) -> tuple[Any, asyncio.Future[list[str]], int]:
    """100 producers appending ``each`` records, once the child acknowledged some batches.

    Returns the appender, the producers' task (its result: the ids acknowledged) and the pid
    of the child they are writing through.
    """
    await _warm(store, permit, make_record)
    appender = store._appender
    task = asyncio.ensure_future(_produce(store, permit, make_record, producers=100, each=each))
    await _until(lambda: appender.acknowledged >= acknowledged)
    return appender, task, appender.pid


async def test_appends_are_committed_by_the_writer_process(
    pstore, paths, permit, make_record
) -> None:
    await _warm(pstore, permit, make_record)
    ids = await _produce(pstore, permit, make_record, producers=50, each=8)
    appender = pstore._appender
    assert appender.spawned == 1
    assert appender.acknowledged > 0  # batches were committed by the child, not the thread
    pid = appender.pid
    assert b"wking_device._store_child" in _cmdline(pid)
    rows = _rows(paths)
    assert len(rows) == len({row[0] for row in rows}) == 402
    assert set(ids) <= {row[0] for row in rows}
    exported = {record.record_id: record for record in await pstore.export()}
    assert exported[ids[-1]].body == {"k": 49, "i": 7}
    # the size cap counts what the child added, exactly
    measured = _measured(paths)
    assert (await pstore.stats()).bytes == measured


async def test_a_killed_writer_process_loses_no_acknowledged_record(
    pstore, paths, permit, make_record, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="wking_device.store")
    appender, task, pid = await _mid_stream(pstore, permit, make_record, each=30, acknowledged=3)
    os.kill(pid, signal.SIGKILL)
    ids = await task  # every append returns: what the child did not acknowledge was rewritten
    rows = _rows(paths)
    stored = [row[0] for row in rows]
    assert len(stored) == len(set(stored))  # nothing stored twice
    assert set(ids) <= set(stored)
    assert len(ids) == 3000
    assert any("writer process ended" in r.getMessage() for r in caplog.records)
    # the next appends start a new child
    await _produce(pstore, permit, make_record, producers=40, each=2)
    assert appender.spawned == 2
    assert (await pstore.stats()).total == 2 + 3000 + 80


async def test_withdrawal_stops_the_writer_process_and_leaves_nothing_of_the_category(
    pstore, paths, gate, permit, make_record
) -> None:
    pstore.attach(gate)
    await _warm(pstore, permit, make_record)
    appender = pstore._appender
    kept = await _produce(pstore, permit, make_record, producers=40, each=2, category="device_info")
    assert appender.acknowledged > 0
    refused: list[BaseException] = []

    async def producer(k: int) -> None:
        for i in range(1000):
            try:
                await pstore.append([make_record(k=k, i=i)], permit)
            except ConsentError as exc:
                refused.append(exc)
                return

    tasks = [asyncio.ensure_future(producer(k)) for k in range(50)]
    await _until(lambda: appender.acknowledged >= 10)
    pid = appender.pid
    gate.withdraw(["operation_logs"])
    await asyncio.gather(*tasks)
    await pstore.finish_withdrawals()
    assert len(refused) == 50  # every producer was refused once the permit was revoked
    assert _gone(pid)  # the child that held the withdrawn key was stopped (and reaped)
    rows = _rows(paths)
    assert not [row for row in rows if row[1] == "operation_logs"]
    assert set(kept) <= {row[0] for row in rows}


@pytest.mark.parametrize(
    "forged",
    [
        ACK.pack(1, 1, 1, 1, 100) + BATCH_NO.pack(10**9),  # a batch it was never sent
        ACK.pack(10**6, 1, 1, 1, 100),  # more batches than it holds
    ],
    ids=["unknown-batch", "absurd-count"],
)
async def test_a_forged_acknowledgement_stops_the_process_and_loses_nothing(
    pstore, paths, permit, make_record, caplog, forged
) -> None:
    caplog.set_level(logging.ERROR, logger="wking_device.store")
    _, task, pid = await _mid_stream(pstore, permit, make_record, each=20, acknowledged=2)
    # written into the child's own output pipe, as a buggy child would
    with open(f"/proc/{pid}/fd/1", "wb", buffering=0) as pipe:  # noqa: PTH123, ASYNC230
        pipe.write(forged)
    ids = await task
    stored = [row[0] for row in _rows(paths)]
    assert len(stored) == len(set(stored))
    assert set(ids) <= set(stored)
    assert len(ids) == 2000
    assert _gone(pid)
    assert ["malformed acknowledgement" in r.getMessage() for r in caplog.records] == [True]


async def test_nonces_stay_unique_between_the_process_and_the_writer_thread(
    pstore, paths, permit, make_record
) -> None:
    await _warm(pstore, permit, make_record)  # sealed by the writer thread
    await _produce(pstore, permit, make_record, producers=50, each=4)  # by the child
    os.kill(pstore._appender.pid, signal.SIGKILL)
    await _until(lambda: pstore._appender.pid is None)
    await pstore.append([make_record(after=True)], permit)  # a new child
    rows = _rows(paths)
    nonces = [payload[1:13] for _, _, payload in rows]
    assert len(rows) == 203
    assert len(set(nonces)) == len(nonces)
    prefixes = {nonce[:4] for nonce in nonces}
    assert len(prefixes) >= 3  # the thread's sealer and two children's, each its own block


async def test_appends_use_the_writer_thread_when_the_process_cannot_start(
    paths, settings, gate, permit, make_record, caplog, monkeypatch, tmp_path
) -> None:
    del gate
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    caplog.set_level(logging.WARNING, logger="wking_device.store")
    store = open_store(paths, settings, writer_process=True)
    try:
        ids = await _produce(store, permit, make_record, producers=50, each=4)
        assert set(ids) <= {row[0] for row in _rows(paths)}
        assert store._appender.spawned == 0
    finally:
        await store.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot start" in warnings[0]
    assert "use the writer thread" in warnings[0]


async def test_a_process_that_keeps_ending_is_given_up_after_three(
    pstore, paths, permit, make_record, caplog
) -> None:
    await _warm(pstore, permit, make_record)
    appender = pstore._appender
    caplog.set_level(logging.WARNING, logger="wking_device.store")
    for round_ in range(3):
        await _produce(pstore, permit, make_record, producers=40, each=1)
        assert appender.spawned == round_ + 1
        os.kill(appender.pid, signal.SIGKILL)
        await _until(lambda: appender.pid is None)
    ids = await _produce(pstore, permit, make_record, producers=40, each=2)
    assert appender.spawned == 3
    assert not appender.usable(asyncio.get_running_loop())
    assert set(ids) <= {row[0] for row in _rows(paths)}
    assert ["ended 3 times" in r.getMessage() for r in caplog.records] == [True]


async def test_close_commits_what_the_process_was_sent(
    paths, settings, gate, permit, make_record
) -> None:
    del gate
    store = open_store(paths, settings, writer_process=True)
    await _warm(store, permit, make_record)
    acknowledged: list[str] = []
    refused: list[StoreClosed] = []

    async def producer(k: int) -> None:
        for i in range(10_000):
            record = make_record(k=k, i=i)
            try:
                await store.append([record], permit)
            except StoreClosed as exc:  # refused at the call: the store was closed before it
                refused.append(exc)
                return
            acknowledged.append(record.record_id)

    tasks = asyncio.gather(*(producer(k) for k in range(100)))
    await _until(lambda: store._appender.acknowledged >= 2 and bool(store._appender._held))
    pid = store._appender.pid
    await store.aclose()
    await tasks  # every append in flight at the close was committed and acknowledged
    assert len(refused) == 100
    assert _gone(pid)
    stored = {row[0] for row in _rows(paths)}
    assert set(acknowledged) <= stored
    assert len(stored) == len(acknowledged) + 2


async def test_the_process_ignores_interrupts_meant_for_its_parent(
    pstore, permit, make_record
) -> None:
    await _warm(pstore, permit, make_record)
    await _produce(pstore, permit, make_record, producers=40, each=1)
    appender = pstore._appender
    pid = appender.pid
    before = appender.acknowledged
    os.kill(pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    os.kill(pid, signal.SIGTERM)  # as does a service manager's stop
    await _produce(pstore, permit, make_record, producers=40, each=2)
    assert appender.pid == pid  # the same child went on (its parent ends it)
    assert appender.acknowledged > before


async def test_appends_of_a_second_event_loop_use_the_writer_thread(
    pstore, paths, permit, make_record
) -> None:
    await _warm(pstore, permit, make_record)
    other: list[str] = []

    def in_another_loop() -> None:
        async def run() -> None:
            other.extend(await _produce(pstore, permit, make_record, producers=20, each=3))

        asyncio.run(run())

    thread = threading.Thread(target=in_another_loop)
    thread.start()
    mine = await _produce(pstore, permit, make_record, producers=50, each=3)
    await asyncio.to_thread(thread.join, 30)
    assert not thread.is_alive()
    assert pstore._appender.spawned == 1
    assert set(mine) | set(other) <= {row[0] for row in _rows(paths)}
    assert len(other) == 60


_PARENT = textwrap.dedent(
    """
    import asyncio, sys
    from wking_device.collect._install import open_installation_gate
    from wking_device.config import load_settings, resolve_paths
    from wking_device.models import Record
    from wking_device.store import open_store

    paths = resolve_paths(sys.argv[1])
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    permit = gate.permit(["operation_logs"])
    store = open_store(paths, settings, writer_process=True)

    async def main():
        n = 0
        async def producer(k):
            nonlocal n
            while True:
                record = Record(category="operation_logs", policy_version=permit.policy_version,
                                consent_id=permit.consent_ids["operation_logs"], body={"k": k})
                await store.append([record], permit)
                n += 1
                if n % 200 == 0 and store._appender.pid:
                    print(n, store._appender.pid, flush=True)
        await asyncio.gather(*(producer(k) for k in range(50)))

    asyncio.run(main())
    """
)


def test_the_process_ends_with_its_parent_and_keeps_what_was_acknowledged(
    paths, settings, gate
) -> None:
    del gate  # granted in the fixture: the parent asks for its permit
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(paths.home)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    acknowledged, child = 0, 0
    deadline = time.monotonic() + 60
    try:
        while acknowledged < 2000:
            assert time.monotonic() < deadline, "the parent did not append in time"
            line = parent.stdout.readline()
            assert line, "the parent ended early"
            count, pid = map(int, line.split())
            acknowledged, child = count, pid
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    deadline = time.monotonic() + 30
    while not _gone(child):
        assert time.monotonic() < deadline, "the writer process outlived its parent"
        time.sleep(0.01)
    with contextlib.closing(sqlite3.connect(paths.data_dir / DB_FILE)) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
        (stored,) = conn.execute("SELECT COUNT(*) FROM records").fetchone()
    assert stored >= acknowledged
    store = open_store(paths, settings, writer_process=True)  # nobody holds the store now
    try:
        assert asyncio.run(store.stats()).total == stored
    finally:
        store.close()


@pytest.mark.parametrize(("line", "expected"), [("", False), ("writer_process = true\n", True)])
def test_the_setting_chooses_the_writer_unless_the_caller_does(paths, gate, line, expected) -> None:
    del gate
    paths.config_file.write_text(f"[storage]\n{line}", encoding="utf-8")
    settings = load_settings(paths)
    assert settings.storage.writer_process is expected
    store = open_store(paths, settings)
    try:
        assert (store._appender is not None) is expected
    finally:
        store.close()
    store = open_store(paths, settings, writer_process=not expected)
    try:
        assert (store._appender is not None) is (not expected)
    finally:
        store.close()


async def test_a_starting_process_takes_no_batch_until_it_says_it_is_ready(
    paths, settings, gate, permit, make_record
) -> None:
    del gate
    store = open_store(paths, settings, writer_process=True)
    try:
        appender = store._appender
        loop = asyncio.get_running_loop()
        # an interpreter starting: the batches of these turns go to the writer thread
        assert appender.prepare(loop) is False
        await store.append([make_record(early=True)], permit)
        assert appender.acknowledged == 0
        await _until(lambda: appender.prepare(loop))
        await _produce(store, permit, make_record, producers=40, each=2)
        assert appender.acknowledged > 0
        assert appender.spawned == 1  # the one started when the store opened
    finally:
        await store.aclose()


async def test_records_appended_again_through_the_process_are_stored_once_and_counted_once(
    pstore, paths, permit, make_record
) -> None:
    await _warm(pstore, permit, make_record)
    records = [make_record(i=i) for i in range(300)]
    await asyncio.gather(*(pstore.append([record], permit) for record in records))
    before = pstore._appender.acknowledged
    # the same ids, each beside a new record in the batches: the child's INSERT ignores the
    # old ones, so its count is not the bytes added and the store is measured again
    fresh = [make_record(j=j) for j in range(300)]
    again = [r for pair in zip(records, fresh, strict=True) for r in pair]
    await asyncio.gather(*(pstore.append([record], permit) for record in again))
    assert pstore._appender.acknowledged > before
    stats = await pstore.stats()
    assert stats.total == 602
    measured = _measured(paths)
    assert stats.bytes == measured


async def test_a_process_that_cannot_write_hands_everything_to_the_writer_thread(
    pstore, paths, permit, make_record, caplog
) -> None:
    await _warm(pstore, permit, make_record)
    appender = pstore._appender
    caplog.set_level(logging.INFO, logger="wking_device.store")
    pid = appender.pid
    # the child may not grow any file past its size now: its next commit fails for real
    # (SQLite reports the disk full), it rolls back and ends without acknowledging
    wal = paths.data_dir / f"{DB_FILE}-wal"
    limit = max(wal.stat().st_size, (paths.data_dir / DB_FILE).stat().st_size) + 4096
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, limit))
    ids = await _produce(pstore, permit, make_record, producers=100, each=20)
    assert _gone(pid)
    stored = [row[0] for row in _rows(paths)]
    assert len(stored) == len(set(stored))
    assert set(ids) <= set(stored)
    assert len(ids) == 2000
    assert any("exit status 1" in r.getMessage() for r in caplog.records)


async def test_the_process_stores_the_same_times_as_the_writer_thread(
    tmp_path, permit, make_record
) -> None:
    """created_at as given (an int, -0.0, a future time) and expires_at from the store's clock."""
    now = 1_795_000_000.5
    times = [1_700_000_000, -0.0, now + 10 * 86400, now - 5.25, 0]
    stored: dict[bool, list[tuple[str, float, float]]] = {}
    for process in (False, True):
        paths = resolve_paths(tmp_path / f"home-{process}")
        paths.ensure()
        settings = load_settings(paths)
        gate = open_installation_gate(paths, settings)
        gate.grant(["operation_logs", "device_info"], method="api")
        mine = gate.permit(["operation_logs", "device_info"])
        store = open_store(paths, settings, writer_process=process, clock=lambda: now)
        try:
            # a first append per category makes its data key; then the process is ready
            for category in ("operation_logs", "device_info"):
                await store.append([_record(mine, category, created_at=now)], mine)
            if process:
                await _until(lambda store=store: store._appender.ready)
            before = store._appender.acknowledged if process else 0
            records = [
                _record(mine, category, created_at=t, n=i)
                for i, t in enumerate(times)
                for category in ("operation_logs", "device_info")
            ]
            await asyncio.gather(*(store.append([r], mine) for r in records))
            if process:
                assert store._appender.acknowledged > before  # the child wrote them
        finally:
            await store.aclose()
        with contextlib.closing(sqlite3.connect(paths.data_dir / DB_FILE)) as conn:
            rows = conn.execute(
                "SELECT category, created_at, expires_at FROM records ORDER BY seq"
            ).fetchall()
        stored[process] = sorted(rows)
    assert stored[True] == stored[False]
    assert len(stored[True]) == 12
    by_time = {(c, t) for c, t, _ in stored[True]}
    assert ("operation_logs", 1_700_000_000.0) in by_time


def _record(permit: Permit, category: str, *, created_at: float, **body: object) -> Record:
    return Record(
        category=category,
        consent_id=permit.consent_ids[category],
        policy_version=permit.policy_version,
        body=dict(body) or {"op": "connect"},
        created_at=created_at,
    )


async def test_batches_go_to_the_writer_thread_while_a_stalled_process_has_a_full_pipe(
    pstore, paths, permit, make_record
) -> None:
    await _warm(pstore, permit, make_record)
    appender = pstore._appender
    pid = appender.pid
    os.kill(pid, signal.SIGSTOP)  # the child takes nothing from its pipe any more
    try:
        batches = [[make_record(b=b, i=i, pad="p" * 200) for i in range(500)] for b in range(12)]
        tasks = [asyncio.ensure_future(pstore.append(batch, permit)) for batch in batches]
        # some batches filled the pipe and wait in it; the others went to the writer thread
        await _until(lambda: any(task.done() for task in tasks))
        await asyncio.sleep(0)
        assert appender._held  # held by the stalled child
        assert not all(task.done() for task in tasks)
    finally:
        os.kill(pid, signal.SIGCONT)
    await asyncio.gather(*tasks)
    assert appender.pid == pid  # the same child caught up
    stored = [row[0] for row in _rows(paths)]
    assert len(stored) == len(set(stored)) == 2 + 12 * 500


async def test_a_blocking_close_on_the_loop_itself_settles_what_was_in_flight(
    paths, settings, gate, permit, make_record
) -> None:
    del gate
    store = open_store(paths, settings, writer_process=True)
    await _warm(store, permit, make_record)
    appends = [asyncio.ensure_future(store.append([make_record(i=i)], permit)) for i in range(300)]
    await _until(lambda: bool(store._appender._held))
    store.close()  # blocks this loop: the child's acknowledgements are read by close itself
    outcomes = await asyncio.gather(*appends, return_exceptions=True)
    assert outcomes == [None] * 300
    assert len(_rows(paths)) == 302


_FORKED = """
import asyncio, os, signal, sys, time
from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import Record
from wking_device.store import open_store

paths = resolve_paths(sys.argv[1])
settings = load_settings(paths)
permit = open_installation_gate(paths, settings).permit(["operation_logs"])
store = open_store(paths, settings, writer_process=True)


async def main():
    for n in range(400):
        record = Record(category="operation_logs", policy_version=permit.policy_version,
                        consent_id=permit.consent_ids["operation_logs"], body={"n": n})
        await store.append([record], permit)


asyncio.run(main())
child = store._appender.pid
worker = os.fork()  # a worker made by fork (multiprocessing's default on Linux) lives on
if worker == 0:
    time.sleep(120)
    os._exit(0)
try:
    store.close()  # the writer process sees its input end at once, not after the worker
    print("closed", child is not None)
finally:
    os.kill(worker, signal.SIGKILL)
    os.waitpid(worker, 0)
"""


def test_a_process_forked_from_the_store_does_not_keep_the_writer_process_alive(
    paths, gate
) -> None:
    del gate  # granted in the fixture
    out = subprocess.run(  # before the fix, close waited for the worker (and then killed)
        [sys.executable, "-c", _FORKED, str(paths.home)],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["closed", "True"]


_INTERRUPTED_CLOSE = """
import asyncio, os, signal, sys, threading
from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import Record
from wking_device.errors import StoreInUse
from wking_device.store import open_store
from wking_device.store._batches import _Call

paths = resolve_paths(sys.argv[1])
process = sys.argv[2] == "process"
settings = load_settings(paths)
permit = open_installation_gate(paths, settings).permit(["operation_logs"])
store = open_store(paths, settings, writer_process=process)


async def main():
    for n in range(50):
        record = Record(category="operation_logs", policy_version=permit.policy_version,
                        consent_id=permit.consent_ids["operation_logs"], body={"n": n})
        await store.append([record], permit)


asyncio.run(main())
# what close waits for: the writer thread busy with a long call, or a stopped writer process
blocked, release = threading.Event(), threading.Event()
if process:
    os.kill(store._appender.pid, signal.SIGSTOP)
    blocked.set()
else:
    store._enqueue(_Call(lambda: (blocked.set(), release.wait(60))))
interrupted = threading.Event()


def ctrl_c():  # a Ctrl-C while close() waits
    blocked.wait(60)
    while not interrupted.wait(0.05):
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


threading.Thread(target=ctrl_c, daemon=True).start()
try:
    store.close()
except KeyboardInterrupt:
    interrupted.set()
print("interrupted", interrupted.is_set())
release.set()
if process:
    os.kill(store._appender.pid, signal.SIGCONT)
store.close()  # finishes what the interrupted close left
print("writer stopped", not store._thread.is_alive())
try:
    open_store(paths, settings).close()  # the store's lock is let go
    print("reopened True")
except StoreInUse:
    print("reopened False")
"""


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_a_close_interrupted_by_ctrl_c_is_finished_by_the_next_close(
    paths, gate, writer: str
) -> None:
    del gate  # granted in the fixture
    out = subprocess.run(  # before the fix, the second close returned at once: writer alive
        [sys.executable, "-c", _INTERRUPTED_CLOSE, str(paths.home), writer],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [
        "interrupted",
        "True",
        "writer",
        "stopped",
        "True",
        "reopened",
        "True",
    ], out.stdout
    assert len(_rows(paths)) == 50


@pytest.mark.parametrize("handed_back", [False, True])
async def test_the_writer_that_seals_an_append_scrubs_its_macs(
    pstore, paths, permit, make_record, handed_back
) -> None:
    # appends are only serialised on the caller's loop: the process that seals them scrubs
    # them, and so does the writer thread when a batch the process never committed comes back
    from wking_device._redact import MAC_RE  # noqa: PLC0415

    await _warm(pstore, permit, make_record)
    appender = pstore._appender
    pid = appender.pid
    if handed_back:  # its next commit fails (the disk "full"): it ends without acknowledging
        wal = paths.data_dir / f"{DB_FILE}-wal"
        limit = max(wal.stat().st_size, (paths.data_dir / DB_FILE).stat().st_size) + 4096
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, limit))
    before = appender.acknowledged
    records = [
        make_record(
            note=f"seen C0:57:4B:00:{n % 256:02X}:01 via hci0", n=n, **{f"c0574b{n:06x}": 1}
        )
        for n in range(300)
    ]
    await asyncio.gather(*(pstore.append([record], permit) for record in records))
    if handed_back:
        assert _gone(pid)
        assert appender.acknowledged == before  # none of these went through the process
    else:
        assert appender.acknowledged > before  # these went through the process
    exported = {r.record_id: r for r in await pstore.export()}
    for record in records:
        stored = exported[record.record_id].body
        assert MAC_RE.search(repr(stored)) is None, stored
        assert stored["note"] == "seen [MAC] via hci0"
        assert stored["n"] == record.body["n"]
