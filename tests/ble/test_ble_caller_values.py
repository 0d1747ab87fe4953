"""Wrong values from a caller of the BLE objects: a UsageError naming the argument, nothing done.

Through the simulator and bleak's public API. ``keeper.keep("AA:..")`` (one address, not a
collection of them) used to be read as a set of characters: nothing was kept and the speakers
kept so far were let go, silently; ``speaker.write(uuid, "text")`` was reported as a Bluetooth
failure ("unexpected TypeError"); ``events(max_queue=0)`` gave a stream that dropped every event.
"""

from __future__ import annotations

import asyncio

import pytest

from wking_device.ble import (
    SessionKeeper,
    Speaker,
    SpeakerTracker,
    discover,
    find,
    find_speaker,
)
from wking_device.errors import InvalidAddress, UsageError
from wking_device.sim import SimWorld

BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"


async def test_one_address_instead_of_a_collection_keeps_what_is_kept() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        address = world.speakers[0].address
        found = await discover(2.0, backend=world.backend, count=1)
        async with SessionKeeper(backend=world.backend) as keeper:
            assert await keeper.keep({address}, found) == {address}
            with pytest.raises(UsageError, match="wanted") as caught:
                await keeper.keep(address, found)
            assert "{" in (caught.value.remedy or "")
            assert keeper.kept == {address}  # not let go


async def test_writing_text_is_a_usage_error_not_a_bluetooth_error() -> None:
    async with (
        SimWorld.fleet(1, adv_interval_ms=20) as world,
        Speaker(world.speakers[0].address, backend=world.backend) as speaker,
    ):
        with pytest.raises(UsageError, match="data must be bytes"):
            await speaker.write(BATTERY_LEVEL, "text")  # type: ignore[arg-type]
        assert speaker.is_connected


@pytest.mark.parametrize("max_queue", [0, -1])
async def test_a_stream_that_would_hold_no_event_is_refused(max_queue: int) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        speaker = Speaker(world.speakers[0].address, backend=world.backend)
        with pytest.raises(UsageError, match="max_queue"):
            speaker.events(max_queue=max_queue)
        tracker = SpeakerTracker(backend=world.backend)
        with pytest.raises(UsageError, match="max_queue"):
            tracker.events(max_queue=max_queue)


@pytest.mark.parametrize("address", ["kitchen", "\x1b[31mkitchen", "AA:BB:CC:DD:EE"])
async def test_find_refuses_a_name_at_once_as_speaker_does(address: str) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        for find_it in (find, find_speaker):
            with pytest.raises(InvalidAddress) as caught:
                # a long scan: the refusal comes before it, or the test's timeout fails it
                async with asyncio.timeout(10):
                    await find_it(address, timeout=60, backend=world.backend)
            assert caught.value.address == address
            assert "\x1b" not in str(caught.value)


@pytest.mark.parametrize("address", [None, 12, b"AA:BB:CC:DD:EE:FF"])
async def test_find_refuses_an_address_that_is_not_a_string(address: object) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        with pytest.raises(UsageError, match="address"):
            await find(address, timeout=1, backend=world.backend)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), "2"])
async def test_a_scan_time_that_is_not_a_number_of_seconds_is_refused(seconds: object) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        address = world.speakers[0].address
        with pytest.raises(UsageError, match="timeout"):
            await discover(seconds, backend=world.backend)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="timeout"):
            await find(address, timeout=seconds, backend=world.backend)  # type: ignore[arg-type]
