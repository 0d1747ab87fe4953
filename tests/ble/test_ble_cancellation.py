"""A caller's cancellation reaches it, even when it lands while the session cleans up."""

from __future__ import annotations

import asyncio

from bleak import BleakClient

from wking_device.ble import Speaker
from wking_device.sim import SimWorld, SpeakerSpec


async def test_a_cancel_during_the_cleanup_of_a_failed_attempt_is_not_swallowed() -> None:
    async with SimWorld([SpeakerSpec.for_index(1, adv_interval_ms=20)]) as world:
        sim = world.speakers[0]
        speaker = Speaker(sim.address, backend=world.backend)
        client = BleakClient(sim.address, backend=world.backend.client)
        await client.connect()
        # Cleaning up an attempt disconnects, which takes a round trip on the link (as on BlueZ);
        # the caller's cancellation (e.g. its asyncio.timeout) lands in the middle of it.
        cleanup = asyncio.create_task(speaker._abandon(client))
        await asyncio.sleep(0)
        cleanup.cancel()
        await asyncio.wait([cleanup])
        assert cleanup.cancelled()
        if client.is_connected:
            await client.disconnect()
