"""A session's event stream ends when the session is closed, and only then (review).

``disconnect()`` on a session whose link was already down (lost, and not reconnected) closed the
session without ending its ``events()`` streams, so an ``async for`` over them waited for ever —
also after leaving ``async with Speaker(...)``, the usual way to close it. And ``reconnect()`` of
a connected session ended them, although the stream survives reconnects.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from wking_device.ble import Speaker
from wking_device.events import Connected, Disconnected, SpeakerEvent

pytest.importorskip("bumble")
from wking_device.sim import SimWorld

if TYPE_CHECKING:
    from wking_device.ble import EventStream


async def _next(stream: EventStream[SpeakerEvent], kind: type) -> SpeakerEvent:
    async with asyncio.timeout(10):
        async for event in stream:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the stream ended before a {kind.__name__}")


async def _rest(stream: EventStream[SpeakerEvent]) -> list[SpeakerEvent]:
    """What is left in the stream, once it ended (a stream that never ends fails the test)."""
    async with asyncio.timeout(5):
        return [event async for event in stream]


async def test_leaving_the_session_after_the_link_was_lost_ends_its_stream() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        speaker = Speaker(sim.address, backend=world.backend)
        stream = speaker.events()
        async with speaker:
            assert await _next(stream, Connected) == Connected(reconnect=False)
            sim.faults.in_range = False
            assert await _next(stream, Disconnected) == Disconnected(expected=False)
        assert await _rest(stream) == []


async def test_disconnect_of_a_session_never_connected_ends_its_stream() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        speaker = Speaker(world.speakers[0].address, backend=world.backend)
        stream = speaker.events()
        await speaker.disconnect()
        assert await _rest(stream) == []


async def test_a_stream_survives_reconnect_of_a_connected_session() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        speaker = Speaker(world.speakers[0].address, backend=world.backend)
        async with speaker:
            stream = speaker.events()
            await speaker.reconnect()
            assert await _next(stream, Disconnected) == Disconnected(expected=True)
            assert await _next(stream, Connected) == Connected(reconnect=True)
            assert speaker.is_connected
        assert await _rest(stream) == [Disconnected(expected=True)]
