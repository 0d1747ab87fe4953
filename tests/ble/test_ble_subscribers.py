"""Speaker event subscribers are decoupled from the receive path (issue 10, defect 3).

Before, callbacks ran inside the notification callback: a subscriber spending 2 ms per event,
with 200 events queued ahead of a response, delayed that response past the command timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import pytest
from tests._waiting import until as _until

from wking_device.ble import Speaker
from wking_device.ble._delivery import EventQueue
from wking_device.errors import UsageError
from wking_device.protocol import Button, ButtonPressed
from wking_device.sim import SimWorld, SpeakerSpec

# Speaker.subscribe (deprecated: DeprecationWarning) is exercised here on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Speaker.subscribe:DeprecationWarning")

if TYPE_CHECKING:
    from wking_device.config import BleSettings


async def test_a_slow_subscriber_does_not_delay_a_command(fast_settings: BleSettings) -> None:
    spec = SpeakerSpec.for_index(1, adv_interval_ms=20, mtu=23)
    async with (
        SimWorld([spec]) as world,
        Speaker(world.speakers[0].address, backend=world.backend, settings=fast_settings) as sp,
    ):
        seen: list[object] = []

        def slow(event: object) -> None:
            time.sleep(0.002)  # a subscriber that blocks the loop 2 ms per event
            seen.append(event)

        sp.subscribe(slow)
        presses = [world.speakers[0].press_button(Button.PLAY_PAUSE) for _ in range(200)]
        await asyncio.gather(*presses)  # 200 event notifications are on their way
        state = await sp.get_state()  # command_timeout is 0.3 s; 200 x 2 ms is 0.4 s
        assert state.volume == world.speakers[0].state.volume
        await _until(lambda: len(seen) == 200)
        assert all(isinstance(e, ButtonPressed) for e in seen)
        assert sp.events_dropped == 0


async def test_events_reach_every_subscriber_in_order_and_unsubscribe_stops_them(
    fast_settings: BleSettings,
) -> None:
    async with (
        SimWorld([SpeakerSpec.for_index(1, adv_interval_ms=20)]) as world,
        Speaker(world.speakers[0].address, backend=world.backend, settings=fast_settings) as sp,
    ):
        first: list[object] = []
        second: list[object] = []
        sp.subscribe(first.append)
        stop = sp.subscribe(second.append)
        for button in (Button.POWER, Button.LIGHT, Button.VOLUME_UP):
            await world.speakers[0].press_button(button)
        await _until(lambda: len(first) == 3 and len(second) == 3)
        assert [e.button for e in first] == [Button.POWER, Button.LIGHT, Button.VOLUME_UP]  # type: ignore[attr-defined]
        assert first == second
        stop()
        await world.speakers[0].press_button(Button.POWER)
        await _until(lambda: len(first) == 4)
        assert len(second) == 3


async def test_overflow_drops_the_oldest_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    delivered: list[int] = []
    queue: EventQueue[int] = EventQueue(delivered.append, max_queued=3)
    for i in range(10):  # all queued before the delivery task first runs
        queue.put(i)
    assert queue.queued == 3
    assert queue.dropped == 7
    await _until(lambda: queue.queued == 0)
    assert delivered == [7, 8, 9]
    assert "7" not in "".join(r.getMessage() for r in caplog.records if r.levelno < logging.WARNING)
    assert any("events behind" in r.getMessage() for r in caplog.records)


async def test_a_raising_subscriber_is_logged_and_the_next_event_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivered: list[int] = []

    def picky(event: int) -> None:
        if event == 1:
            raise ValueError("no")
        delivered.append(event)

    queue: EventQueue[int] = EventQueue(picky)
    for i in range(3):
        queue.put(i)
    await _until(lambda: queue.queued == 0 and len(delivered) == 2)
    assert delivered == [0, 2]
    assert "subscriber raised" in caplog.text


async def test_close_discards_queued_events_and_leaves_no_task() -> None:
    delivered: list[int] = []
    queue: EventQueue[int] = EventQueue(delivered.append)
    before = asyncio.all_tasks()
    queue.put(1)
    queue.close()
    queue.put(2)
    await asyncio.sleep(0)
    await _until(lambda: not [t for t in asyncio.all_tasks() - before if not t.done()])
    assert delivered == []


def test_max_queued_must_be_positive() -> None:
    with pytest.raises(UsageError):
        EventQueue(print, max_queued=0)
