"""Wrong values from a caller of the BLE objects: a UsageError naming the argument, nothing done.

Through the simulator and bleak's public API. ``keeper.keep("AA:..")`` (one address, not a
collection of them) used to be read as a set of characters: nothing was kept and the speakers
kept so far were let go, silently; ``speaker.write(uuid, "text")`` was reported as a Bluetooth
failure ("unexpected TypeError"); ``events(max_queue=0)`` gave a stream that dropped every event.
"""

from __future__ import annotations

import pytest

from wking_device.ble import SessionKeeper, Speaker, SpeakerTracker, discover
from wking_device.errors import UsageError
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
