"""The wait for a connection slot is bounded: ``ble.slot_timeout`` while the queue stands still.

Every slot held for good (by our sessions, or by another program's connection on the adapter)
makes a first connect fail with :class:`ConnectionFailed` (``TOO_MANY_CONNECTIONS``) naming the
adapter and who holds its slots, instead of waiting forever; a slot freed during the wait is
taken; a wait that ends without a slot (bound or cancellation) leaves the limiter's counts exact;
a queue that moves is waited out however long it is; ``read_all`` with its own limit is not
bounded; a reconnect keeps its own total bound. All on the simulator, through the public API;
the assertions are on types, messages and counts, not on elapsed times.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

import pytest
from bleak import BleakClient
from tests._waiting import until

from wking_device.ble import ConnectionLimiter, Speaker, discover, limiter_for, read_all
from wking_device.config import BleSettings
from wking_device.errors import (
    BluetoothReason,
    ConnectionFailed,
    UsageError,
)
from wking_device.sim import AdapterSpec, SimWorld

if TYPE_CHECKING:
    from wking_device.ble import RetryPolicy
    from wking_device.models import DeviceInfo

_SMALL = 0.3
"""A small bound: a wait nothing can end fails after it."""
_LARGE = 30.0
"""A bound no test waits out: a wait that ends, ends by a slot."""


async def test_every_slot_held_by_our_sessions_fails_the_connect_with_a_typed_error(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    settings = fast_settings.replace(max_connections=2, slot_timeout=_SMALL)
    async with SimWorld.fleet(4, adv_interval_ms=20) as world:
        a, b, c, d = (s.address for s in world.speakers)
        limiter = limiter_for(world.backend, settings.max_connections)
        holders = [
            Speaker(x, backend=world.backend, settings=settings, retry=fast_retry) for x in (a, b)
        ]
        for holder in holders:
            await holder.connect()
        late = Speaker(c, backend=world.backend, settings=settings, retry=fast_retry)
        async with asyncio.timeout(_LARGE):  # a hang fails here rather than never
            with pytest.raises(ConnectionFailed) as caught:
                await late.connect()
        error = caught.value
        assert error.reason is BluetoothReason.TOO_MANY_CONNECTIONS
        assert error.address == c
        assert "the default adapter" in error.message
        assert f"within {_SMALL:g} s" in error.message
        assert "2 slots" in error.message
        assert "2 by sessions of this process, 0 by other connections" in error.message
        assert "\n" not in str(error)
        assert error.remedy is not None
        assert "max_connections" in error.remedy
        assert "slot_timeout" in error.remedy
        assert error.cli_remedy is not None
        assert "ble.slot_timeout" in error.cli_remedy
        assert not world.speakers[2].connected  # it never tried: no slot
        assert not late.is_connected
        # nothing leaked: the counts are those of the two holders
        assert (limiter.active, limiter.waiting) == (2, 0)
        await holders[0].disconnect()
        assert await limiter.available() == 1
        # the freed slot is taken at once, even under the small bound
        async with Speaker(d, backend=world.backend, settings=settings, retry=fast_retry) as now:
            assert now.is_connected
            assert limiter.active == 2
        await holders[1].disconnect()
        assert limiter.active == 0


async def test_a_slot_held_by_another_program_is_named_as_such(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    settings = fast_settings.replace(max_connections=2, slot_timeout=_SMALL)
    adapters = [AdapterSpec("hci1")]
    async with SimWorld.fleet(3, adv_interval_ms=20, adapters=adapters) as world:
        a, b, c = (s.address for s in world.speakers)
        other_program = BleakClient(a, backend=world.backend.client, timeout=5)
        await other_program.connect()
        try:
            ours = Speaker(
                b, backend=world.backend, settings=settings, retry=fast_retry, adapter="hci1"
            )
            await ours.connect()
            late = Speaker(
                c, backend=world.backend, settings=settings, retry=fast_retry, adapter="hci1"
            )
            async with asyncio.timeout(_LARGE):
                with pytest.raises(ConnectionFailed) as caught:
                    await late.connect()
            message = caught.value.message
            assert "adapter hci1" in message
            assert "2 slots" in message
            assert "1 by sessions of this process, 1 by other connections" in message
            await ours.disconnect()
            limiter = limiter_for(world.backend, settings.max_connections, adapter="hci1")
            assert (limiter.active, limiter.waiting) == (0, 0)
        finally:
            await other_program.disconnect()


async def test_a_controller_limit_below_max_connections_is_named(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    settings = fast_settings.replace(slot_timeout=_SMALL)  # max_connections 5
    async with SimWorld.fleet(2, adv_interval_ms=20, connection_slots=1) as world:
        a, b = (s.address for s in world.speakers)
        async with Speaker(a, backend=world.backend, settings=settings, retry=fast_retry):
            late = Speaker(b, backend=world.backend, settings=settings, retry=fast_retry)
            async with asyncio.timeout(_LARGE):
                with pytest.raises(ConnectionFailed) as caught:
                    await late.connect()
        assert "1 slots (the controller's limit; max_connections is 5)" in caught.value.message


async def test_a_slot_freed_during_the_wait_is_taken(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    settings = fast_settings.replace(max_connections=1, slot_timeout=_LARGE)
    async with SimWorld.fleet(2, adv_interval_ms=20) as world:
        a, b = (s.address for s in world.speakers)
        limiter = limiter_for(world.backend, settings.max_connections)
        first = Speaker(a, backend=world.backend, settings=settings, retry=fast_retry)
        await first.connect()
        second = Speaker(b, backend=world.backend, settings=settings, retry=fast_retry)
        waiting = asyncio.create_task(second.connect())
        await until(lambda: limiter.waiting == 1)
        await first.disconnect()
        async with asyncio.timeout(10):
            await waiting
        assert second.is_connected
        await second.disconnect()
        assert (limiter.active, limiter.waiting) == (0, 0)


async def test_a_cancelled_wait_leaves_no_slot_taken(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    settings = fast_settings.replace(max_connections=1, slot_timeout=_LARGE)
    async with SimWorld.fleet(3, adv_interval_ms=20) as world:
        a, b, c = (s.address for s in world.speakers)
        limiter = limiter_for(world.backend, settings.max_connections)
        first = Speaker(a, backend=world.backend, settings=settings, retry=fast_retry)
        await first.connect()
        waiters = [
            asyncio.create_task(
                Speaker(b, backend=world.backend, settings=settings, retry=fast_retry).connect()
            )
            for _ in range(2)
        ]
        await until(lambda: limiter.waiting == 2)
        for task in waiters:
            task.cancel()
        for task in waiters:
            with pytest.raises(asyncio.CancelledError):
                await task
        assert (limiter.active, limiter.waiting) == (1, 0)
        await first.disconnect()
        assert limiter.active == 0
        quick = settings.replace(slot_timeout=_SMALL)
        async with Speaker(c, backend=world.backend, settings=quick, retry=fast_retry) as now:
            assert now.is_connected  # the slot is free at once


async def test_a_bounded_wait_cancelled_by_its_caller_is_a_cancellation_not_a_slot_error(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    # the caller's own asyncio.timeout, shorter than slot_timeout, stays the caller's
    settings = fast_settings.replace(max_connections=1, slot_timeout=_LARGE)
    async with SimWorld.fleet(2, adv_interval_ms=20) as world:
        a, b = (s.address for s in world.speakers)
        limiter = limiter_for(world.backend, settings.max_connections)
        async with Speaker(a, backend=world.backend, settings=settings, retry=fast_retry):
            late = Speaker(b, backend=world.backend, settings=settings, retry=fast_retry)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(_SMALL):
                    await late.connect()
            assert (limiter.active, limiter.waiting) == (1, 0)
        assert limiter.active == 0


async def test_a_queue_that_moves_is_waited_out_past_the_bound() -> None:
    # 6 speakers through 1 shared slot, each holding it 0.5 s: the last waits 2.5 s or more in
    # all, more than slot_timeout (2 s), but never 2 s without a slot given back.
    bound = 2.0
    hold = 0.5
    async with SimWorld.fleet(6, instant_connect=True, adv_interval_ms=20) as world:
        found = await discover(3.0, backend=world.backend, count=6)
        settings = BleSettings(max_connections=1, slot_timeout=bound)

        async def hold_then_read(speaker: Speaker) -> DeviceInfo:
            await asyncio.sleep(hold)  # the scenario: a session holds its slot a while
            return await speaker.read_info()

        result = await read_all(
            found, backend=world.backend, settings=settings, read=hold_then_read
        )
        assert result.ok, result.errors
        assert len(result.infos) == 6
        assert result.duration_s > bound  # the wait outlasted the bound, and nobody failed


async def test_read_all_with_its_own_limit_waits_for_its_turn_without_the_bound() -> None:
    # each read holds the only slot longer than slot_timeout: only an unbounded wait reads all
    async with SimWorld.fleet(4, instant_connect=True, adv_interval_ms=20) as world:
        found = await discover(3.0, backend=world.backend, count=4)
        settings = BleSettings(slot_timeout=0.1)

        async def hold_then_read(speaker: Speaker) -> DeviceInfo:
            await asyncio.sleep(0.3)  # longer than slot_timeout, with nothing else moving
            return await speaker.read_info()

        result = await read_all(
            found, backend=world.backend, settings=settings, limit=1, read=hold_then_read
        )
        assert result.ok, result.errors
        assert result.peak_connections == 1


async def test_read_all_on_the_shared_limiter_records_the_speakers_no_slot_came_for(
    fast_settings: BleSettings,
) -> None:
    settings = fast_settings.replace(max_connections=1, slot_timeout=_SMALL)
    async with SimWorld.fleet(3, instant_connect=True, adv_interval_ms=20) as world:
        held, *rest = world.speakers
        found = await discover(3.0, backend=world.backend, count=3)
        targets = [s for s in found if s.address != held.address]
        async with Speaker(held.address, backend=world.backend, settings=settings):
            async with asyncio.timeout(_LARGE):
                result = await read_all(targets, backend=world.backend, settings=settings)
        assert not result.infos
        assert sorted(result.errors) == sorted(s.address for s in rest)
        for error in result.errors.values():
            assert isinstance(error, ConnectionFailed)
            assert error.reason is BluetoothReason.TOO_MANY_CONNECTIONS
        limiter = limiter_for(world.backend, settings.max_connections)
        assert (limiter.active, limiter.waiting) == (0, 0)


async def test_the_limiter_bound_restarts_when_a_slot_is_given_back() -> None:
    limiter = ConnectionLimiter(1)
    await limiter.acquire("A")
    with pytest.raises(TimeoutError):
        await limiter.acquire("B", timeout=0.05)
    assert (limiter.active, limiter.waiting) == (1, 0)
    waiter = asyncio.create_task(limiter.acquire("B", timeout=_LARGE))
    await until(lambda: limiter.waiting == 1)
    limiter.release("A")
    async with asyncio.timeout(10):
        await waiter
    assert limiter.active == 1
    limiter.release("B")
    assert limiter.active == 0


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), -math.inf])
def test_a_speaker_refuses_a_slot_timeout_that_is_not_positive(value: float) -> None:
    with pytest.raises(UsageError, match="slot_timeout"):
        Speaker("AA:BB:CC:DD:EE:FF", slot_timeout=value)


def test_a_speaker_takes_infinity_as_no_bound() -> None:
    Speaker("AA:BB:CC:DD:EE:FF", slot_timeout=math.inf)  # read_all(limit=n) passes it
