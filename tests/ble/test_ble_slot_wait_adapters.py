"""With several adapters, a connect waiting for a slot takes the first one freed on any of them.

Two simulated adapters with one slot each; the speakers are heard by both (or, where the test
says so, by one). A wait is registered on every adapter that heard the speaker: a slot freed on
the other adapter than the one first chosen is taken at once (``slot_timeout`` is long, 30 s,
and every wait is bounded far below it); the wait is withdrawn from every other adapter the
moment one grants; a speaker heard by one adapter never takes another's slot; a bound or a
cancellation leaves every limiter's counts exact; the error names every adapter and its holders.
All on the simulator through the public API; assertions on counts, adapters and messages, never
on elapsed times.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import pytest
from tests._waiting import until

from wking_device._redact import MAC_RE
from wking_device.ble import ConnectionLimiter, Speaker, acquire_first, limiter_for
from wking_device.errors import BluetoothReason, ConnectionFailed, UsageError
from wking_device.sim import AdapterSpec, SimWorld

if TYPE_CHECKING:
    from wking_device.ble import RetryPolicy
    from wking_device.config import BleSettings
    from wking_device.sim import SimSpeaker

_LARGE = 30.0
"""``slot_timeout`` no test waits out: a wait that ends, ends by a slot."""
_HANG = 10.0
"""A bound on what must end at once (a hang fails here, far below ``_LARGE``)."""
_SMALL = 0.3
"""A small ``slot_timeout``: a wait nothing can end fails after it."""
_BOTH = ["hci0", "hci1"]


def _fleet(speakers: int) -> SimWorld:
    """``speakers`` speakers heard by two adapters with one slot each."""
    adapters = [AdapterSpec("hci0", connection_slots=1), AdapterSpec("hci1", connection_slots=1)]
    return SimWorld.fleet(speakers, adv_interval_ms=20, adapters=adapters)


def _near(speaker: SimSpeaker, adapter: str) -> None:
    """Both adapters hear ``speaker``; ``adapter`` hears it best (it is picked first)."""
    for name in _BOTH:
        speaker.set_rssi(-45 if name == adapter else -80, adapter=name)


def _limiters(world: SimWorld, settings: BleSettings) -> tuple[ConnectionLimiter, ...]:
    return tuple(limiter_for(world.backend, settings.max_connections, adapter=n) for n in _BOTH)


def _counts(limiters: tuple[ConnectionLimiter, ...]) -> list[tuple[int, int]]:
    return [(limiter.active, limiter.waiting) for limiter in limiters]


def _session(
    world: SimWorld, speaker: SimSpeaker, settings: BleSettings, retry: RetryPolicy
) -> Speaker:
    return Speaker(
        speaker.address, backend=world.backend, settings=settings, retry=retry, adapters=_BOTH
    )


async def _connected(
    world: SimWorld, settings: BleSettings, retry: RetryPolicy, *speakers: SimSpeaker
) -> list[Speaker]:
    """Sessions of ``speakers``, connected one after the other (each takes a slot)."""
    sessions = [_session(world, s, settings, retry) for s in speakers]
    for session in sessions:
        await session.connect()
    return sessions


async def test_a_slot_freed_on_the_other_adapter_is_taken_at_once(
    fast_settings: BleSettings, fast_retry: RetryPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="wking_device")
    settings = fast_settings.replace(slot_timeout=_LARGE)
    async with _fleet(3) as world:
        a, b, c = world.speakers
        _near(a, "hci0")
        _near(b, "hci1")
        _near(c, "hci0")  # every slot taken: hci0 is chosen first, by the better RSSI
        l0, l1 = _limiters(world, settings)
        first = _session(world, a, settings, fast_retry)
        second = _session(world, b, settings, fast_retry)
        await first.connect()
        await second.connect()
        assert (first.adapter, second.adapter) == ("hci0", "hci1")
        late = _session(world, c, settings, fast_retry)
        waiting = asyncio.create_task(late.connect())
        await until(lambda: l0.waiting == 1)
        await second.disconnect()  # hci1's slot, not the chosen adapter's
        async with asyncio.timeout(_HANG):
            await waiting
        assert late.is_connected
        assert late.adapter == "hci1"
        assert world.connected_on("hci1") == [c.address]
        # withdrawn from hci0 the moment hci1 granted; no slot leaked
        assert _counts((l0, l1)) == [(1, 0), (1, 0)]
        assert late.limiter is l1
        await late.disconnect()
        await first.disconnect()
        assert _counts((l0, l1)) == [(0, 0), (0, 0)]
    # the switch of adapter is logged, and no log line names a speaker's address (DESIGN §4)
    switched = [r.getMessage() for r in caplog.records if "came free first" in r.getMessage()]
    assert len(switched) == 1, switched
    assert "hci1" in switched[0]
    messages = " ".join(r.getMessage() for r in caplog.records).upper()
    assert not MAC_RE.search(messages), [r.getMessage() for r in caplog.records]
    assert not any(s.address.upper() in messages for s in (a, b, c))


async def test_a_speaker_heard_by_one_adapter_never_takes_the_others_slot(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    settings = fast_settings.replace(slot_timeout=_LARGE)
    async with _fleet(4) as world:
        a, b, only0, both = world.speakers
        _near(a, "hci0")
        _near(b, "hci1")
        only0.set_rssi(-45, adapter="hci0")
        only0.set_rssi(None, adapter="hci1")  # hci1 does not hear it
        _near(both, "hci0")
        l0, l1 = _limiters(world, settings)
        holders = await _connected(world, settings, fast_retry, a, b)
        lonely = _session(world, only0, settings, fast_retry)
        lonely_wait = asyncio.create_task(lonely.connect())
        await until(lambda: l0.waiting == 1)
        either = _session(world, both, settings, fast_retry)
        either_wait = asyncio.create_task(either.connect())
        await until(lambda: l0.waiting == 2)
        await holders[1].disconnect()  # hci1 frees: only the speaker hci1 hears may take it
        async with asyncio.timeout(_HANG):
            await either_wait
        assert either.adapter == "hci1"
        assert not lonely_wait.done()
        assert not lonely.is_connected
        assert world.connected_on("hci1") == [both.address]
        assert _counts((l0, l1)) == [(1, 1), (1, 0)]  # the lonely one waits on hci0 alone
        await holders[0].disconnect()
        async with asyncio.timeout(_HANG):
            await lonely_wait
        assert lonely.adapter == "hci0"
        assert _counts((l0, l1)) == [(1, 0), (1, 0)]
        await lonely.disconnect()
        await either.disconnect()
        assert _counts((l0, l1)) == [(0, 0), (0, 0)]


async def test_a_cancelled_wait_on_several_adapters_leaves_every_limiter_clean(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    settings = fast_settings.replace(slot_timeout=_LARGE)
    async with _fleet(4) as world:
        a, b, c, d = world.speakers
        _near(a, "hci0")
        _near(b, "hci1")
        _near(c, "hci0")
        _near(d, "hci1")
        l0, l1 = _limiters(world, settings)
        holders = await _connected(world, settings, fast_retry, a, b)
        waiters = [
            asyncio.create_task(_session(world, s, settings, fast_retry).connect()) for s in (c, d)
        ]
        # each wait is registered on both adapters
        await until(lambda: (l0.waiting, l1.waiting) == (2, 2))
        for task in waiters:
            task.cancel()
        for task in waiters:
            with pytest.raises(asyncio.CancelledError):
                await task
        assert _counts((l0, l1)) == [(1, 0), (1, 0)]
        for holder in holders:
            await holder.disconnect()
        assert _counts((l0, l1)) == [(0, 0), (0, 0)]
        quick = settings.replace(slot_timeout=_SMALL)
        async with _session(world, c, quick, fast_retry) as now:
            assert now.is_connected  # a slot is free at once


async def test_no_slot_on_any_adapter_names_every_adapter_and_leaves_counts_exact(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    settings = fast_settings.replace(slot_timeout=_SMALL)
    async with _fleet(3) as world:
        a, b, c = world.speakers
        _near(a, "hci0")
        _near(b, "hci1")
        _near(c, "hci1")
        l0, l1 = _limiters(world, settings)
        holders = await _connected(world, settings, fast_retry, a, b)
        late = _session(world, c, settings, fast_retry)
        async with asyncio.timeout(_HANG):
            with pytest.raises(ConnectionFailed) as caught:
                await late.connect()
        error = caught.value
        assert error.reason is BluetoothReason.TOO_MANY_CONNECTIONS
        assert error.address == c.address
        assert "adapters hci1, hci0" in error.message  # in the order they were preferred
        assert f"within {_SMALL:g} s" in error.message
        taken = "1 by sessions of this process, 0 by other connections on the adapter"
        for name in _BOTH:
            assert f"{name}: 1 slots (the controller's limit; max_connections is" in error.message
            assert f"{name}: 1 slots" in error.message
        assert error.message.count(taken) == 2
        assert "\n" not in str(error)
        assert error.remedy is not None
        assert "slot_timeout" in error.remedy
        assert not late.is_connected
        assert _counts((l0, l1)) == [(1, 0), (1, 0)]
        for holder in holders:
            await holder.disconnect()
        assert _counts((l0, l1)) == [(0, 0), (0, 0)]


# --- the limiters alone: acquire_first over two queues -----------------------------------------


async def _both_held_and_m_waiting() -> tuple[
    ConnectionLimiter, ConnectionLimiter, asyncio.Task[ConnectionLimiter]
]:
    """Two one-slot limiters held by "A" and "B", and "M" waiting on both (l0 preferred)."""
    l0, l1 = ConnectionLimiter(1), ConnectionLimiter(1)
    await l0.acquire("A")
    await l1.acquire("B")
    both = asyncio.create_task(acquire_first([l0, l1], "M", timeout=_LARGE))
    await until(lambda: (l0.waiting, l1.waiting) == (1, 1))
    return l0, l1, both


async def test_a_free_slot_is_taken_in_the_order_of_preference() -> None:
    l0, l1 = ConnectionLimiter(1), ConnectionLimiter(1)
    assert await acquire_first([l1, l0], "A") is l1
    assert await acquire_first([l1, l0], "B") is l0  # l1 full: the next one
    assert [(x.active, x.waiting) for x in (l0, l1)] == [(1, 0), (1, 0)]
    with pytest.raises(UsageError, match="at least one"):
        await acquire_first([], "C")


async def test_each_queue_stays_first_come_first_served() -> None:
    l0, l1 = ConnectionLimiter(1), ConnectionLimiter(1)
    await l0.acquire("A")
    await l1.acquire("B")
    single = asyncio.create_task(l0.acquire("S", timeout=_LARGE))  # first in l0's queue
    await until(lambda: l0.waiting == 1)
    both = asyncio.create_task(acquire_first([l0, l1], "M", timeout=_LARGE))
    await until(lambda: (l0.waiting, l1.waiting) == (2, 1))
    l0.release("A")  # l0's slot goes to the one who came first there
    async with asyncio.timeout(_HANG):
        await single
    assert not both.done()
    assert (l0.active, l0.waiting, l1.waiting) == (1, 1, 1)
    l1.release("B")
    async with asyncio.timeout(_HANG):
        assert await both is l1
    assert [(x.active, x.waiting) for x in (l0, l1)] == [(1, 0), (1, 0)]


async def test_a_wait_granted_elsewhere_lets_the_next_in_the_queue_move() -> None:
    # no starvation: a group at the head of l0's queue, granted by l1, gives l0's turn away
    l0, l1, both = await _both_held_and_m_waiting()
    behind = asyncio.create_task(l0.acquire("S", timeout=_LARGE))
    await until(lambda: l0.waiting == 2)
    l1.release("B")
    async with asyncio.timeout(_HANG):
        assert await both is l1
    # withdrawn from l0 by the time the caller resumes
    assert (l0.waiting, l1.waiting) == (1, 0)
    l0.release("A")
    async with asyncio.timeout(_HANG):
        await behind
    assert [(x.active, x.waiting) for x in (l0, l1)] == [(1, 0), (1, 0)]


async def test_slots_freed_on_both_at_once_are_taken_once() -> None:
    l0, l1, both = await _both_held_and_m_waiting()
    l0.release("A")
    l1.release("B")
    async with asyncio.timeout(_HANG):
        winner = await both
    assert (l0.active + l1.active, l0.waiting + l1.waiting) == (1, 0)
    assert winner.active == 1
    assert winner.held_by(["M"]) == 1


async def test_a_cancellation_racing_a_grant_gives_the_slot_back() -> None:
    l0, l1, both = await _both_held_and_m_waiting()
    l0.release("A")  # l0's queue wakes and grants before the caller sees its cancellation
    both.cancel()
    with pytest.raises(asyncio.CancelledError):
        await both
    assert [(x.active, x.waiting) for x in (l0, l1)] == [(0, 0), (1, 0)]
    assert l0.held_by(["M"]) == 0


async def test_the_bound_fails_the_wait_and_restarts_when_any_queue_moves() -> None:
    l0, l1 = ConnectionLimiter(1), ConnectionLimiter(2)
    await l0.acquire("A")
    await l1.acquire("B")
    await l1.acquire("C")
    with pytest.raises(TimeoutError):
        await acquire_first([l0, l1], "M", timeout=0.05)
    assert [(x.active, x.waiting) for x in (l0, l1)] == [(1, 0), (2, 0)]
    waiter = asyncio.create_task(acquire_first([l0, l1], "M", timeout=_LARGE))
    await until(lambda: (l0.waiting, l1.waiting) == (1, 1))
    l1.release("C")
    async with asyncio.timeout(_HANG):
        assert await waiter is l1


async def test_many_waits_over_two_queues_all_end_with_exact_counts() -> None:
    # 30 connects, some preferring each adapter, some on one adapter only, with cancellations:
    # nobody starves, no limiter ever grants past its limit, nothing is left counted at the end
    l0, l1 = ConnectionLimiter(2), ConnectionLimiter(1)
    assert await acquire_first([l0, l0], "dup") is l0  # one limiter twice: a plain acquire
    l0.release("dup")
    over: list[int] = []
    gate = asyncio.Event()  # the first holders keep their slots until every session queued

    async def session(index: int) -> None:
        choice = [[l0, l1], [l1, l0], [l0], [l1]][index % 4]
        limiter = await acquire_first(choice, f"S{index}", timeout=_LARGE)
        if l0.active > l0.limit or l1.active > l1.limit:
            over.append(index)
        await gate.wait()
        await asyncio.sleep(0)  # hold the slot across a turn of the loop
        limiter.release(f"S{index}")

    tasks = [asyncio.create_task(session(i)) for i in range(30)]
    await until(lambda: (l0.active, l1.active) == (2, 1) and l0.waiting + l1.waiting >= 20)
    tasks[-1].cancel()
    tasks[-2].cancel()
    gate.set()
    async with asyncio.timeout(_HANG):
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert over == []
    assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results)
    assert sum(r is None for r in results) == 28
    assert [(x.active, x.waiting) for x in (l0, l1)] == [(0, 0), (0, 0)]
