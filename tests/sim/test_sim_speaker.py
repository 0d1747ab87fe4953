"""The simulated speaker's behaviour through bleak: scanning modes, MTU, events, power."""

from __future__ import annotations

import asyncio

import pytest
from bleak import BleakClient, BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.exc import BleakGATTProtocolError

from wking_device.protocol import (
    BATTERY_LEVEL_UUID,
    MANUFACTURER_NAME_UUID,
    WKING_COMMAND_CHAR_UUID,
    WKING_NOTIFY_CHAR_UUID,
    WKING_SERVICE_UUID,
    Button,
    ButtonPressed,
    FrameCodec,
    LightMode,
    Ping,
    PowerOff,
    PowerState,
    Response,
    Role,
    SetLight,
    Status,
)
from wking_device.sim import SimWorld, SpeakerSpec


async def test_passive_scan_sees_no_name_active_does() -> None:
    async with SimWorld.fleet(2, adv_interval_ms=20) as world:
        passive = await BleakScanner.discover(
            0.15,
            return_adv=True,
            scanning_mode="passive",
            bluez=BlueZScannerArgs(
                or_patterns=[OrPattern(0, AdvertisementDataType.FLAGS, b"\x06")]
            ),
            backend=world.backend.scanner,
        )
        assert len(passive) == 2
        assert all(adv.local_name is None for _d, adv in passive.values())
        assert all(WKING_SERVICE_UUID in adv.service_uuids for _d, adv in passive.values())
        active = await BleakScanner.discover(0.15, return_adv=True, backend=world.backend.scanner)
        assert {adv.local_name for _d, adv in active.values()} == {s.name for s in world.speakers}


async def test_service_uuid_filter() -> None:
    async with SimWorld.fleet(2, adv_interval_ms=20) as world:
        wanted = await BleakScanner.discover(
            0.15, service_uuids=[WKING_SERVICE_UUID], backend=world.backend.scanner
        )
        assert len(wanted) == 2
        other = await BleakScanner.discover(
            0.15,
            service_uuids=["0000fe00-0000-1000-8000-00805f9b34fb"],
            backend=world.backend.scanner,
        )
        assert other == []


async def test_fragmentation_at_the_negotiated_mtu() -> None:
    spec = SpeakerSpec.for_index(1, mtu=23)
    async with (
        SimWorld([spec]) as world,
        BleakClient(spec.address, timeout=2, backend=world.backend.client) as client,
    ):
        assert client.mtu_size == 23
        codec = FrameCodec(Role.CENTRAL, mtu=client.mtu_size)
        fragments: list[bytes] = []
        frames: asyncio.Queue = asyncio.Queue()

        def on_notify(_c: object, data: bytearray) -> None:
            fragments.append(bytes(data))
            for frame in codec.receive(bytes(data)):
                frames.put_nowait(frame)

        await client.start_notify(WKING_NOTIFY_CHAR_UUID, on_notify)
        payload = bytes(range(100))
        outgoing = codec.send(Ping(seq=codec.next_seq(), data=payload))
        assert len(outgoing) > 1
        for fragment in outgoing:
            await client.write_gatt_char(WKING_COMMAND_CHAR_UUID, fragment, response=False)
        response = await asyncio.wait_for(frames.get(), 2.0)
        assert isinstance(response, Response)
        assert response.result.data == payload
        assert len(fragments) >= 5
        assert max(len(f) for f in fragments) == 20  # MTU 23 - 3


async def test_button_event_and_power_cycle() -> None:
    async with SimWorld.fleet(1) as world:
        speaker = world.speakers[0]
        lost = asyncio.Event()
        async with BleakClient(
            speaker.address, lambda _c: lost.set(), timeout=2, backend=world.backend.client
        ) as client:
            codec = FrameCodec(Role.CENTRAL, mtu=client.mtu_size)
            frames: asyncio.Queue = asyncio.Queue()
            await client.start_notify(
                WKING_NOTIFY_CHAR_UUID,
                lambda _c, d: [frames.put_nowait(f) for f in codec.receive(bytes(d))],
            )
            await speaker.press_button(Button.VOLUME_UP)
            event = await asyncio.wait_for(frames.get(), 1.0)
            assert isinstance(event, ButtonPressed)
            assert event.button is Button.VOLUME_UP
            for fragment in codec.send(PowerOff(seq=codec.next_seq())):
                await client.write_gatt_char(WKING_COMMAND_CHAR_UUID, fragment, response=True)
            await asyncio.wait_for(lost.wait(), 1.0)
        assert speaker.state.power is PowerState.STANDBY
        assert await BleakScanner.discover(0.3, backend=world.backend.scanner) == []
        await speaker.power_on()
        assert await BleakScanner.find_device_by_address(
            speaker.address, 1.0, backend=world.backend.scanner
        )


async def test_att_errors_surface_as_bleak_gatt_protocol_errors() -> None:
    async with (
        SimWorld.fleet(1) as world,
        BleakClient(world.speakers[0].address, timeout=2, backend=world.backend.client) as client,
    ):
        with pytest.raises(BleakGATTProtocolError) as info:
            await client.write_gatt_char(MANUFACTURER_NAME_UUID, b"nope", response=True)
        assert info.value.args[0] == 0x03  # ATT Write Not Permitted, as a real peripheral
        descriptor = client.services.get_characteristic(BATTERY_LEVEL_UUID).descriptors[0]
        assert await client.read_gatt_descriptor(descriptor.handle) == b"\x00\x00"


async def test_speakers_without_lights_refuse_set_light() -> None:
    specs = [SpeakerSpec.for_index(1, has_lights=False), SpeakerSpec.for_index(2)]
    async with SimWorld(specs) as world:
        results = {}
        for speaker in world.speakers:  # 1: d8-mini without lights, 2: x10
            async with BleakClient(speaker.address, timeout=2, backend=world.backend.client) as c:
                codec = FrameCodec(Role.CENTRAL, mtu=c.mtu_size)
                frames: asyncio.Queue = asyncio.Queue()
                await c.start_notify(
                    WKING_NOTIFY_CHAR_UUID,
                    lambda _c, d, q=frames, k=codec: [q.put_nowait(f) for f in k.receive(bytes(d))],
                )
                for fragment in codec.send(SetLight(seq=codec.next_seq(), mode=LightMode.RAINBOW)):
                    await c.write_gatt_char(WKING_COMMAND_CHAR_UUID, fragment, response=True)
                results[speaker.spec.model_id] = (await asyncio.wait_for(frames.get(), 1.0)).status
        assert results == {"d8-mini": Status.UNSUPPORTED, "x10": Status.OK}
        assert world.speakers[1].state.light is LightMode.RAINBOW
