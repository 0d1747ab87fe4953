"""bleak's examples and integration tests, written for this project, on the conformance bench.

The scenarios bleak's own examples (detection_callback.py, service_explorer.py, two_devices.py,
mtu_size.py, disconnect_callback.py) and integration tests drive a device through: scanning
with filters and callbacks, finding by name and filter, service exploration, notifications,
disconnect callbacks, two devices at once, MTU and pairing. Parts that need the peripheral's
side, a second device or that would change a real speaker's bonds run on the simulator only.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError, BleakGATTProtocolError
from tests._waiting import until as _until

from wking_device.protocol import BATTERY_LEVEL_UUID, WKING_SERVICE_UUID

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    from conftest import Bench

_CCCD = "00002902-0000-1000-8000-00805f9b34fb"


# --- scanning -------------------------------------------------------------------------------------


async def test_scan_with_a_service_filter_and_a_detection_callback(bench: Bench) -> None:
    first: dict[str, AdvertisementData] = {}
    async with BleakScanner(
        lambda d, a: first.setdefault(d.address, a) if d.address == bench.address else None,
        backend=bench.scanner,
    ):
        await _until(lambda: bench.address in first)
    adv = first[bench.address]
    if not adv.service_uuids:
        pytest.skip("the bench device advertises no service UUID to filter on")
    wanted = adv.service_uuids[0]
    seen: dict[str, AdvertisementData] = {}

    unfiltered: list[AdvertisementData] = []

    def on_detection(device: BLEDevice, advertisement: AdvertisementData) -> None:
        if wanted not in advertisement.service_uuids:
            unfiltered.append(advertisement)
        seen[device.address] = advertisement

    async with BleakScanner(on_detection, service_uuids=[wanted], backend=bench.scanner):
        await _until(lambda: bench.address in seen)
    assert unfiltered == []  # the filter holds for every report
    advertisement = seen[bench.address]
    assert -127 <= advertisement.rssi <= 20
    if bench.world is not None:
        assert wanted == WKING_SERVICE_UUID
        assert advertisement.local_name == bench.world.speaker(bench.address).name
        others: list[str] = []
        async with BleakScanner(
            lambda d, _a: others.append(d.address),
            service_uuids=["0000fe00-0000-1000-8000-00805f9b34fb"],
            backend=bench.scanner,
        ):
            await asyncio.sleep(0.2)  # ten advertising intervals: nothing matches
        assert others == []


async def test_find_device_by_name_and_by_filter(bench: Bench) -> None:
    device = await BleakScanner.find_device_by_address(bench.address, 5.0, backend=bench.scanner)
    assert device is not None
    assert device.name, "the bench device advertises no name"
    by_name = await BleakScanner.find_device_by_name(device.name, 5.0, backend=bench.scanner)
    assert by_name is not None
    assert by_name.address == bench.address
    by_filter = await BleakScanner.find_device_by_filter(
        lambda d, _adv: d.address == bench.address, 5.0, backend=bench.scanner
    )
    assert by_filter is not None
    assert by_filter.address == bench.address
    assert (
        await BleakScanner.find_device_by_name("no such speaker", 0.2, backend=bench.scanner)
        is None
    )


# --- service exploration --------------------------------------------------------------------------


async def test_service_exploration_reads_what_is_readable(bench: Bench) -> None:
    # service_explorer.py: walk every service, characteristic and descriptor; read what says
    # "read"; a device may still refuse with an ATT error.
    async with bench.bleak_client() as client:
        handles: set[int] = set()
        for service in client.services:
            for char in service.characteristics:
                assert char.service_uuid == service.uuid
                assert char.handle not in handles
                handles.add(char.handle)
                if "read" in char.properties:
                    with contextlib.suppress(BleakGATTProtocolError):
                        await client.read_gatt_char(char)
                descriptors = {d.uuid for d in char.descriptors}
                if {"notify", "indicate"} & set(char.properties):
                    assert _CCCD in descriptors  # needed to subscribe
                for descriptor in char.descriptors:
                    assert descriptor.characteristic_handle == char.handle
                    if descriptor.uuid != _CCCD:
                        await client.read_gatt_descriptor(descriptor)
        assert client.services.get_characteristic(BATTERY_LEVEL_UUID) is not None


# --- notifications and disconnect callbacks -------------------------------------------------------


async def test_notifications_then_the_peripheral_disconnects(bench: Bench) -> None:
    # disconnect_callback.py and the integration test_disconnect_callback: the peripheral drops
    # the link; the callback runs once, with the client; is_connected is False afterwards.
    speaker = bench.speaker
    disconnected: asyncio.Future[BleakClient] = asyncio.get_running_loop().create_future()
    client = bench.bleak_client(disconnected_callback=disconnected.set_result)
    await client.connect()
    levels: list[int] = []
    await client.start_notify(BATTERY_LEVEL_UUID, lambda _c, d: levels.append(d[0]))
    await speaker.set_battery(55)
    await speaker.set_battery(54)
    await _until(lambda: levels == [55, 54])
    (connection,) = speaker.device.connections.values()
    await connection.disconnect()
    assert await asyncio.wait_for(disconnected, 5.0) is client
    assert not client.is_connected
    with pytest.raises(BleakError):
        await client.read_gatt_char(BATTERY_LEVEL_UUID)


async def test_two_devices_at_once(bench: Bench) -> None:
    # two_devices.py: two clients connected concurrently, each with its own notifications and
    # its own disconnect callback.
    world = bench.world
    if world is None:
        pytest.skip("needs two devices (simulator only)")
    first, second = world.speakers
    gone: list[str] = []
    clients = [
        bench.bleak_client(s.address, disconnected_callback=lambda c: gone.append(c.address))
        for s in (first, second)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    heard: dict[str, list[int]] = {first.address: [], second.address: []}
    for client in clients:
        await client.start_notify(
            BATTERY_LEVEL_UUID, lambda _c, d, a=client.address: heard[a].append(d[0])
        )
    await asyncio.gather(first.set_battery(11), second.set_battery(22))
    await _until(lambda: heard == {first.address: [11], second.address: [22]})
    await clients[0].disconnect()
    assert gone == [first.address]
    assert clients[1].is_connected
    assert (await clients[1].read_gatt_char(BATTERY_LEVEL_UUID))[0] == 22
    await clients[1].disconnect()
    assert gone == [first.address, second.address]


# --- MTU ------------------------------------------------------------------------------------------


async def test_mtu_bounds_writes_without_response(bench: Bench) -> None:
    # mtu_size.py: max_write_without_response_size is MTU - 3 on every backend (BlueZ >= 5.62
    # exports the MTU per characteristic). BleakClient.mtu_size differs: on BlueZ it is 23 with
    # a warning unless bleak's private _acquire_mtu() ran (docs/testing.md), so it is not used.
    async with bench.bleak_client() as client:
        char = client.services.get_characteristic(BATTERY_LEVEL_UUID)
        assert char is not None
        size = char.max_write_without_response_size
        assert 20 <= size <= 514
        if bench.world is not None:
            speaker = bench.world.speaker(bench.address)
            assert size == min(speaker.spec.mtu, 517) - 3


# --- pairing --------------------------------------------------------------------------------------


async def test_pair_then_unpair(bench: Bench) -> None:
    # BlueZ pairs on request (Just Works for a speaker without I/O) and unpair() removes the
    # device, which disconnects. Simulator only: on hardware it would change the speaker's bonds.
    _ = bench.speaker
    disconnected: list[BleakClient] = []
    client = bench.bleak_client(pair=True, disconnected_callback=disconnected.append)
    await client.connect()
    await client.pair()  # already paired: accepted
    assert client.is_connected
    await client.unpair()
    await _until(lambda: disconnected == [client])
    assert not client.is_connected
