"""Adversarial cases of the chunked wake-up of appends' callers (``_batches._settle_groups``).

Real store, real SQLite file, real event loops (run by hand where a test stops, restarts or
closes one, or runs several in threads). Every caller of ``append`` must resume exactly once,
in the order it appended on its loop, whatever happens to the loop in between.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest
from tests.store._hold import hold_writer

from wking_device.errors import StoreClosed
from wking_device.store._batches import _WAKE_CHUNK, _WAKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from wking_device.consent import Permit
    from wking_device.models import Record
    from wking_device.store import RecordStore

_TOTAL = 2 * _WAKE_CHUNK + 10


def _stopped_with_callers_queued(
    loop: asyncio.AbstractEventLoop,
    store: RecordStore,
    make_record: Callable[..., Record],
    permit: Permit,
    done: list[int],
    total: int,
) -> list[asyncio.Task[None]]:
    """Producers whose appends one acknowledgement settles; ``loop`` stopped mid-wake."""
    release = hold_writer(store)
    try:
        tasks = _producers(store, make_record, permit, done, total=total)
        for _ in range(2):  # the appends join batches, handed over at the end of the turn
            loop.run_until_complete(asyncio.sleep(0))
    finally:
        release.set()  # the writer commits them all and acknowledges them in one go
    tasks[0].add_done_callback(lambda _: loop.stop())  # two turns after the first wake
    loop.run_forever()
    assert 0 < len(done) < total
    assert loop in _WAKING  # callers still queued
    return tasks


def _producers(
    store: RecordStore,
    make_record: Callable[..., Record],
    permit: Permit,
    done: list[int],
    first: int = 0,
    total: int = _TOTAL,
) -> list[asyncio.Task[None]]:
    async def produce(n: int) -> None:
        await store.append([make_record(n=n)], permit)
        done.append(n)

    return [asyncio.ensure_future(produce(n)) for n in range(first, first + total)]


@pytest.mark.parametrize("writer", ["thread"])  # one acknowledgement for all the callers
def test_a_loop_stopped_while_callers_wait_resumes_them_all_when_run_again(
    store: RecordStore, make_record: Callable[..., Record], permit: Permit
) -> None:
    loop = asyncio.new_event_loop()
    done: list[int] = []
    try:
        asyncio.set_event_loop(loop)
        tasks = _stopped_with_callers_queued(loop, store, make_record, permit, done, _TOTAL * 2)
        loop.run_until_complete(asyncio.wait_for(asyncio.gather(*tasks), 30))
        assert done == list(range(_TOTAL * 2))  # every caller once, first appended first resumed
        loop.run_until_complete(asyncio.sleep(0))  # the turn with no one left to wake
        assert loop not in _WAKING
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    assert store.closed is False


def test_loops_in_two_threads_sharing_one_store_resume_all_their_callers_in_order(
    store: RecordStore, make_record: Callable[..., Record], permit: Permit
) -> None:
    barrier = threading.Barrier(2)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def run(first: int) -> None:
        async def main() -> None:
            await asyncio.to_thread(barrier.wait, 30)  # both loops append at once
            done: list[int] = []
            tasks = _producers(store, make_record, permit, done, first)
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            results[first] = done

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(first,)) for first in (0, 10_000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert not errors
    assert results == {
        0: list(range(_TOTAL)),
        10_000: list(range(10_000, 10_000 + _TOTAL)),
    }
    assert not any(loop.is_closed() for loop in _WAKING)  # let go of (swept) or never kept


async def test_callers_cancelled_while_queued_do_not_hold_up_the_others(
    store: RecordStore, make_record: Callable[..., Record], permit: Permit
) -> None:
    done: list[int] = []
    tasks = _producers(store, make_record, permit, done)
    await asyncio.sleep(0)  # every producer has appended (their futures wait on the writer)
    for task in tasks[1::3]:
        task.cancel()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    kept = [n for n in range(_TOTAL) if n % 3 != 1]
    assert done == kept
    # a cancelled caller's records are committed anyway (it was acknowledged to no one)
    assert (await store.stats()).total == _TOTAL


async def test_closing_the_store_while_callers_are_queued_resumes_every_one(
    store: RecordStore, make_record: Callable[..., Record], permit: Permit
) -> None:
    done: list[int] = []
    tasks = _producers(store, make_record, permit, done)
    await asyncio.sleep(0)
    await asyncio.wait_for(store.aclose(), 30)
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    # each caller resumed once: stored (before the close) or told the store is closed
    assert all(o is None or isinstance(o, StoreClosed) for o in outcomes), outcomes
    assert done == [n for n, o in enumerate(outcomes) if o is None]
    assert done == sorted(done)


@pytest.mark.parametrize("writer", ["thread"])
def test_a_loop_closed_with_callers_waiting_is_let_go_at_the_next_acknowledgement(
    store: RecordStore, make_record: Callable[..., Record], permit: Permit
) -> None:
    # a loop stopped with callers still queued, then closed: the wake-up queue lets it go at
    # the next acknowledgement (of any loop) instead of keeping it and its callers for good
    loop = asyncio.new_event_loop()
    done: list[int] = []
    asyncio.set_event_loop(loop)
    try:
        tasks = _stopped_with_callers_queued(loop, store, make_record, permit, done, _TOTAL * 2)
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    for task in tasks:
        task._log_destroy_pending = False  # type: ignore[attr-defined]  # pending on purpose

    async def one_more() -> None:
        await store.append([make_record(n=99_999)], permit)

    asyncio.run(one_more())
    assert loop not in _WAKING
    assert not any(other.is_closed() for other in _WAKING)


@pytest.mark.parametrize("writer", ["thread"])
def test_an_acknowledgement_for_a_loop_closed_meanwhile_is_dropped_quietly(
    store: RecordStore, make_record: Callable[..., Record], permit: Permit
) -> None:
    # the writer acknowledges a batch after its loop was closed: nothing raises, the store
    # keeps serving other loops
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        record = make_record(n=1)
        task = loop.create_task(store.append([record], permit))
        loop.call_soon(loop.stop)
        loop.run_forever()  # one turn: the append joined a batch, handed over at its end
        assert not task.done()
    finally:
        asyncio.set_event_loop(None)
        loop.close()

    async def later() -> int:
        await store.append([make_record(n=2)], permit)
        return (await store.stats()).total

    assert asyncio.run(later()) == 2
