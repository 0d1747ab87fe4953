"""Persistent sessions against the simulator: kept up, re-subscribed after a loss, slot-bounded."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from bleak import BleakClient
from bumble.core import UUID

from wking_device.ble import (
    BleBackend,
    RetryPolicy,
    SessionKeeper,
    Speaker,
    close_stale_connections,
    connected_in_stack,
    discover,
)
from wking_device.errors import ConnectionFailed, UsageError
from wking_device.events import Connected, Disconnected, StateChanged
from wking_device.models import OperationKind, Outcome
from wking_device.sim import SimWorld

if TYPE_CHECKING:
    from tests.ble.conftest import Recorder

    from wking_device.ble import EventStream
    from wking_device.config import BleSettings
    from wking_device.events import SpeakerEvent

FAST_BACKOFF = RetryPolicy(attempts=1, base_delay=0.02, max_delay=0.1, jitter=0.0)


async def _next(stream: EventStream[SpeakerEvent], kind: type) -> SpeakerEvent:
    """The next event of ``kind`` on the stream (others skipped), within 10 s."""
    async with asyncio.timeout(10):
        async for event in stream:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the stream ended before a {kind.__name__}")


async def test_a_lost_link_is_reconnected_and_resubscribed(
    recorder: Recorder, fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        found = await discover(2.0, backend=world.backend, count=1)
        async with SessionKeeper(
            backend=world.backend,
            events=recorder.bus,
            settings=fast_settings,
            backoff=FAST_BACKOFF,
            retry=fast_retry,
        ) as keeper:
            assert await keeper.keep({sim.address}, found) == {sim.address}
            async with keeper.session(sim.address).events() as events:
                assert await _next(events, Connected) == Connected(reconnect=False)
                sim.faults.in_range = False  # the simulator's control: the link times out
                lost = await _next(events, Disconnected)
                assert lost == Disconnected(expected=False)
                sim.faults.in_range = True
                assert await _next(events, Connected) == Connected(reconnect=True)
                assert keeper.reconnects == 1
                assert keeper.connected() == {sim.address}
                sim.state.volume = 33
                await sim.notify_state()  # after the reconnect: reaches us only if re-subscribed
                changed = await _next(events, StateChanged)
                assert isinstance(changed, StateChanged)
                assert changed.volume == 33
        assert not sim.connected  # closing the keeper disconnected it
    subscribes = [e for e in recorder.of(OperationKind.SUBSCRIBE) if e.outcome is Outcome.OK]
    assert len(subscribes) >= 4  # vendor channel and battery, on each of the two connections
    notes = [e for e in recorder.of(OperationKind.NOTIFY) if e.outcome is Outcome.OK]
    assert any(e.detail.get("code") is not None for e in notes)  # the state change, logged


async def test_a_link_lost_while_setting_up_is_not_connected_and_its_reconnect_counts(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        dropped = False

        def drop_once(_connection: object, characteristic: Any, *_: object) -> None:
            # the speaker takes the set-up's first subscription, then goes out of range (the
            # Service Changed subscription comes before, while bleak connects)
            nonlocal dropped
            if not dropped and characteristic.uuid != UUID.from_16_bits(0x2A05):
                dropped = True
                sim.faults.in_range = False

        sim.device.on("characteristic_subscription", drop_once)
        found = await discover(2.0, backend=world.backend, count=1)
        async with SessionKeeper(
            backend=world.backend,
            settings=fast_settings,
            backoff=FAST_BACKOFF,
            retry=fast_retry,
        ) as keeper:
            assert await keeper.keep({sim.address}, found) == {sim.address}
            async with keeper.session(sim.address).events() as events:
                assert await _next(events, Disconnected) == Disconnected(expected=False)
                # set up or not, the link was up: it is not a session the caller can use
                assert keeper.connected() == set()
                sim.faults.in_range = True
                assert await _next(events, Connected) == Connected(reconnect=True)
                deadline = asyncio.get_running_loop().time() + 10
                while keeper.connected() != {sim.address}:
                    assert asyncio.get_running_loop().time() < deadline, "never set up"
                    await asyncio.sleep(0.01)
                # the session's second link: a reconnect, as its own event says
                assert keeper.reconnects == 1


async def test_more_wanted_than_slots_keeps_the_strongest_and_leaves_the_rest(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    async with SimWorld.fleet(3, adv_interval_ms=20, connection_slots=3) as world:
        found = await discover(2.0, backend=world.backend, count=3)
        wanted = {s.address for s in world.speakers}
        settings = fast_settings.replace(max_connections=3)
        async with SessionKeeper(
            backend=world.backend,
            settings=settings,
            backoff=FAST_BACKOFF,
            retry=fast_retry,
        ) as keeper:
            assert keeper.slots == 2  # one of the three left for polling
            kept = await keeper.keep(wanted, found)
            strongest = sorted(found, key=lambda s: -s.rssi)[:2]
            assert kept == {s.address for s in strongest}
            async with asyncio.timeout(10):
                while keeper.connected() != kept:  # noqa: ASYNC110 - no event across sessions
                    await asyncio.sleep(0.02)
            # the one left is polled through the free slot of the same adapter's limiter
            (rest,) = [s for s in found if s.address not in kept]
            async with Speaker(rest, backend=world.backend, settings=settings) as polled:
                info = await polled.read_info()
            assert info.address == rest.address
            assert keeper.connected() == kept
            # a speaker no longer wanted is let go at once; its slot goes to the next one
            dropped = strongest[0].address
            kept = await keeper.keep(wanted - {dropped}, found)
            assert kept == {strongest[1].address, rest.address}
            assert not world.speaker(dropped).connected


def test_negative_slots_are_a_usage_error() -> None:
    with pytest.raises(UsageError):
        SessionKeeper(slots=-1)


async def test_a_stale_connection_of_another_program_is_closed_before_keeping(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        found = await discover(2.0, backend=world.backend, count=1)
        # another program holds the speaker: it stops advertising, so nobody else can connect
        gone = asyncio.Event()
        other = BleakClient(
            found[0].device,
            backend=world.backend.client,
            disconnected_callback=lambda _client: gone.set(),
        )
        await other.connect()
        assert [d.address for d in await connected_in_stack(backend=world.backend)] == [sim.address]
        held = fast_settings.replace(connect_timeout=0.5)  # about that timeout: short
        with pytest.raises(ConnectionFailed):  # without closing it, a connect times out
            await Speaker(found[0], backend=world.backend, settings=held).connect()
        async with SessionKeeper(
            backend=world.backend, settings=fast_settings, backoff=FAST_BACKOFF, retry=fast_retry
        ) as keeper:
            await keeper.keep({sim.address}, found)
            async with keeper.session(sim.address).events() as events:
                assert await _next(events, Connected) == Connected(reconnect=False)
            async with asyncio.timeout(5):
                await gone.wait()  # the other program's link was the one closed
            assert not other.is_connected


async def test_no_adapter_backend_means_nothing_is_known_or_closed() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        bare = BleBackend(scanner=world.backend.scanner, client=world.backend.client)
        assert await connected_in_stack(backend=bare) == []
        assert await close_stale_connections(world.speakers[0].address, backend=bare) == 0


async def test_the_platform_stack_is_asked_and_an_unreachable_one_is_no_error() -> None:
    # No BlueZ on D-Bus here (CI): an empty answer. With BlueZ: what it has connected.
    devices = await connected_in_stack()
    assert isinstance(devices, list)
