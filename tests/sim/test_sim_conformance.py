"""bleak's public facade, unmocked, on the simulator backend (the conformance test).

Discover, read Device Information and Battery, write a vendor command and receive the response
notification, disconnect, reconnect and re-subscribe - with nothing but BleakScanner/BleakClient.
"""

from __future__ import annotations

import asyncio

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDBusError

from wking_device.protocol import (
    BATTERY_LEVEL_UUID,
    FIRMWARE_REVISION_UUID,
    MANUFACTURER_NAME_UUID,
    MODEL_NUMBER_UUID,
    SERIAL_NUMBER_UUID,
    WKING_COMMAND_CHAR_UUID,
    WKING_NOTIFY_CHAR_UUID,
    WKING_SERVICE_UUID,
    FrameCodec,
    GetState,
    Response,
    Role,
    SetVolume,
    StateChanged,
)
from wking_device.sim import SimWorld


async def _command(client: BleakClient, codec: FrameCodec, inbox: asyncio.Queue, frame) -> list:
    for fragment in codec.send(frame):
        await client.write_gatt_char(WKING_COMMAND_CHAR_UUID, fragment, response=True)
    first = await asyncio.wait_for(inbox.get(), 2.0)
    frames = [first]
    await asyncio.sleep(0.02)
    while not inbox.empty():
        frames.append(inbox.get_nowait())
    return frames


async def test_bleak_facade_end_to_end() -> None:
    async with SimWorld.fleet(3) as world:
        scanner_cls, client_cls = world.backend.scanner, world.backend.client
        found = await BleakScanner.discover(0.5, return_adv=True, backend=scanner_cls)
        assert set(found) == {s.address for s in world.speakers}
        speaker = world.speakers[1]
        device, adv = found[speaker.address]
        assert device.name == speaker.name == adv.local_name
        assert WKING_SERVICE_UUID in adv.service_uuids
        assert adv.manufacturer_data[0xFFFF][:2] == b"WK"
        assert adv.tx_power == -8
        assert adv.rssi == speaker.rssi

        disconnects: list[BleakClient] = []
        client = BleakClient(device, disconnects.append, timeout=5.0, backend=client_cls)
        await client.connect()
        try:
            assert client.is_connected
            assert client.mtu_size == 247
            assert (await client.read_gatt_char(MANUFACTURER_NAME_UUID)) == b"W-KING"
            assert (await client.read_gatt_char(MODEL_NUMBER_UUID)).decode() == (
                speaker.spec.model_number
            )
            assert (await client.read_gatt_char(SERIAL_NUMBER_UUID)).decode() == speaker.spec.serial
            assert (await client.read_gatt_char(FIRMWARE_REVISION_UUID)).decode() == (
                speaker.spec.firmware
            )
            assert (await client.read_gatt_char(BATTERY_LEVEL_UUID))[
                0
            ] == speaker.state.battery_level

            codec = FrameCodec(Role.CENTRAL, mtu=client.mtu_size)
            inbox: asyncio.Queue = asyncio.Queue()

            def on_notify(_char: object, data: bytearray) -> None:
                for frame in codec.receive(bytes(data)):
                    inbox.put_nowait(frame)

            await client.start_notify(WKING_NOTIFY_CHAR_UUID, on_notify)
            frames = await _command(
                client, codec, inbox, SetVolume(seq=codec.next_seq(), volume=64)
            )
            assert isinstance(frames[0], Response)
            assert frames[0].seq == 0
            assert isinstance(frames[1], StateChanged)
            assert frames[1].volume == 64
            assert speaker.state.volume == 64
        finally:
            await client.disconnect()
        assert not client.is_connected
        assert disconnects == [client]  # BlueZ also calls back on a local disconnect

        # reconnect with a fresh BLEDevice, re-subscribe, and the channel works again
        device = await BleakScanner.find_device_by_address(
            speaker.address, 2.0, backend=scanner_cls
        )
        assert device is not None
        async with BleakClient(device, timeout=5.0, backend=client_cls) as again:
            codec = FrameCodec(Role.CENTRAL, mtu=again.mtu_size)
            inbox = asyncio.Queue()

            def on_notify_again(_char: object, data: bytearray) -> None:
                for frame in codec.receive(bytes(data)):
                    inbox.put_nowait(frame)

            await again.start_notify(WKING_NOTIFY_CHAR_UUID, on_notify_again)
            frames = await _command(again, codec, inbox, GetState(seq=codec.next_seq()))
            assert frames[0].result.volume == 64
            battery: asyncio.Queue = asyncio.Queue()
            await again.start_notify(BATTERY_LEVEL_UUID, lambda _c, d: battery.put_nowait(d[0]))
            await speaker.set_battery(41)
            assert await asyncio.wait_for(battery.get(), 2.0) == 41
            await again.stop_notify(BATTERY_LEVEL_UUID)
            with pytest.raises(BleakDBusError, match="No notify session started"):  # as BlueZ
                await again.stop_notify(BATTERY_LEVEL_UUID)
