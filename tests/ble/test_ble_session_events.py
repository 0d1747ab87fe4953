"""Issue 12 findings 2 and 4: a Speaker tells its user about the link and its events.

``disconnected_callback`` (as bleak's) and ``async for event in speaker.events()`` with one
vocabulary (:mod:`wking_device.events`): one ``BatteryChanged`` per battery change, although the
simulated speaker reports it on the vendor channel and on the Battery Level characteristic.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from wking_device.ble import Speaker
from wking_device.events import (
    BatteryChanged,
    ButtonPressed,
    Connected,
    Disconnected,
    SpeakerEvent,
    StateChanged,
)
from wking_device.protocol import Button

pytest.importorskip("bumble")
from wking_device.sim import SimWorld

if TYPE_CHECKING:
    from wking_device.ble import EventStream, RetryPolicy
    from wking_device.config import BleSettings


async def _next(stream: EventStream, kind: type) -> SpeakerEvent:
    async with asyncio.timeout(10):
        async for event in stream:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the stream ended before a {kind.__name__}")


async def test_events_deliver_one_battery_change_once_and_the_vendor_events() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        speaker = Speaker(sim.address, backend=world.backend)
        async with speaker, speaker.events() as stream:
            await sim.set_battery(42)
            await speaker.set_volume(7)  # the speaker reports the state change
            await sim.press_button(Button.PLAY_PAUSE)
            got: list[SpeakerEvent] = []
            async with asyncio.timeout(10):
                async for event in stream:
                    got.append(event)
                    if isinstance(event, ButtonPressed):
                        break
            batteries = [e for e in got if isinstance(e, BatteryChanged)]
            assert [b.level for b in batteries] == [42]
            assert any(isinstance(e, StateChanged) and e.volume == 7 for e in got)
        # a closed session ends its streams
        assert stream.dropped == 0


async def test_disconnected_callback_and_events_follow_the_link(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        lost: list[Speaker] = []
        speaker = Speaker(
            sim.address,
            backend=world.backend,
            settings=fast_settings,
            retry=fast_retry,
            disconnected_callback=lost.append,
        )
        stream = speaker.events()
        async with speaker:
            assert await _next(stream, Connected) == Connected(reconnect=False)
            sim.faults.in_range = False
            assert await _next(stream, Disconnected) == Disconnected(expected=False)
            assert lost == [speaker]
            sim.faults.in_range = True
            await speaker.reconnect()
            assert await _next(stream, Connected) == Connected(reconnect=True)
        assert await _next(stream, Disconnected) == Disconnected(expected=True)
        assert lost == [speaker, speaker]
        # disconnect() ended the stream
        assert [event async for event in stream] == []
