"""Conformance: BlueZ behaviour a bleak user meets, checked on the simulator and on hardware.

Each test states what BlueZ (through bleak 3.1's ``bluezdbus`` backend) does and checks it
through bleak's public API on the ``bench`` (simulated by default; a real adapter and speaker
too with ``pytest --hardware``). The simulator-only parity tests are in
tests/sim/test_sim_bluez_parity.py; docs/testing.md lists what still differs.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest
from bleak.exc import (
    BleakCharacteristicNotFoundError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
)
from bumble.att import Attribute, AttributeValue
from bumble.gatt import (
    GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
    GATT_SERVICE_CHANGED_CHARACTERISTIC,
    Characteristic,
    Descriptor,
    Service,
)
from tests._waiting import until as _until

from wking_device.protocol import BATTERY_LEVEL_UUID, BATTERY_SERVICE_UUID

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.characteristic import BleakGATTCharacteristic
    from bumble.device import Connection

    from conftest import Bench

_SERVICE_CHANGED = "00002a05-0000-1000-8000-00805f9b34fb"


# --- services= ------------------------------------------------------------------------------------


async def test_services_filter_keeps_only_the_listed_services(bench: Bench) -> None:
    # bleak's BlueZ backend: BlueZ resolves every service; bleak keeps those whose UUID is in
    # services= (manager.get_services(requested_services)). The others are absent from
    # client.services and their characteristics cannot be used.
    async with bench.bleak_client() as client:
        everything = {service.uuid for service in client.services}
    assert BATTERY_SERVICE_UUID in everything, "the bench device has no Battery service"
    others = everything - {BATTERY_SERVICE_UUID}
    assert others, "the bench device has only one service"
    async with bench.bleak_client(services=[BATTERY_SERVICE_UUID]) as client:
        assert {service.uuid for service in client.services} == {BATTERY_SERVICE_UUID}
        assert (await client.read_gatt_char(BATTERY_LEVEL_UUID))[0] <= 100
        other = sorted(others)[0]
        assert client.services.get_service(other) is None
        with pytest.raises(BleakCharacteristicNotFoundError):
            await client.read_gatt_char("00002a29-0000-1000-8000-00805f9b34fb")  # in DIS


async def test_services_filter_takes_16_bit_uuids(bench: Bench) -> None:
    # BleakClient normalises services= with normalize_uuid_str: "180f" is the Battery service.
    async with bench.bleak_client(services=["180f"]) as client:
        assert [service.uuid for service in client.services] == [BATTERY_SERVICE_UUID]
    async with bench.bleak_client(services=[]) as client:  # a set, not None: keeps none
        assert list(client.services) == []


async def test_dangerous_use_bleak_cache_reuses_the_last_collection(bench: Bench) -> None:
    # bleak's BlueZ manager caches the collection it built per device (until BlueZ removes the
    # device); connect(dangerous_use_bleak_cache=True) returns that one, filter included, not
    # what this client's services= asks for. Without the flag the services are built afresh.
    async with bench.bleak_client(services=[BATTERY_SERVICE_UUID]):
        pass
    client = bench.bleak_client()
    await client.connect(dangerous_use_bleak_cache=True)
    try:
        assert [service.uuid for service in client.services] == [BATTERY_SERVICE_UUID]
    finally:
        await client.disconnect()
    async with bench.bleak_client() as client:
        assert len(list(client.services)) > 1


# --- use_cached -----------------------------------------------------------------------------------


async def test_use_cached_returns_the_last_value_read_without_asking(bench: Bench) -> None:
    # bleak's BlueZ backend reads the characteristic's D-Bus "Value" property: what BlueZ last
    # read (or was notified) on this connection. It does not ask the device.
    async with bench.bleak_client() as client:
        read = await client.read_gatt_char(BATTERY_LEVEL_UUID)
        assert await client.read_gatt_char(BATTERY_LEVEL_UUID, use_cached=True) == read
        if bench.world is None:
            return
        speaker = bench.speaker
        await speaker.set_battery((read[0] + 7) % 100)  # changed; nobody subscribed to hear it
        assert await client.read_gatt_char(BATTERY_LEVEL_UUID, use_cached=True) == read
        fresh = await client.read_gatt_char(BATTERY_LEVEL_UUID)  # use_cached=False: asks
        assert fresh[0] == speaker.state.battery_level != read[0]
        assert await client.read_gatt_char(BATTERY_LEVEL_UUID, use_cached=True) == fresh


async def test_use_cached_follows_notifications(bench: Bench) -> None:
    # BlueZ stores a notified value in the attribute too (gatt-client.c notify_cb).
    speaker = bench.speaker
    async with bench.bleak_client() as client:
        got: list[int] = []
        await client.start_notify(BATTERY_LEVEL_UUID, lambda _c, d: got.append(d[0]))
        await speaker.set_battery(37)
        await _until(lambda: got == [37])
        assert (await client.read_gatt_char(BATTERY_LEVEL_UUID, use_cached=True))[0] == 37


async def test_use_cached_before_any_value_fails(bench: Bench) -> None:
    # BlueZ exports no "Value" before a read or notification; bleak's manager raises BleakError
    # ("... not found, device may be disconnected"). On hardware BlueZ may keep a value from an
    # earlier connection in its GATT cache, so this runs on the simulator only.
    _ = bench.speaker
    async with bench.bleak_client() as client:
        with pytest.raises(BleakError, match="not found, device may be disconnected"):
            await client.read_gatt_char(BATTERY_LEVEL_UUID, use_cached=True)


# --- BleakClient("AA:BB:...") ---------------------------------------------------------------------


async def test_an_address_string_that_does_not_advertise_is_not_found(bench: Bench) -> None:
    # bleak's BlueZ backend runs BleakScanner.find_device_by_address(address, timeout) before
    # connecting and raises BleakDeviceNotFoundError when the scan ends without it.
    client = bench.bleak_client(bench.absent, timeout=1.0)
    started = time.monotonic()
    with pytest.raises(BleakDeviceNotFoundError) as caught:
        await client.connect()
    assert time.monotonic() - started >= 0.9  # it scanned for the whole timeout
    assert caught.value.identifier == bench.absent
    assert not client.is_connected


async def test_an_address_string_that_advertises_is_found_and_connected(bench: Bench) -> None:
    disconnected: list[BleakClient] = []
    async with bench.bleak_client(disconnected_callback=disconnected.append) as client:
        assert client.is_connected
        assert (await client.read_gatt_char(BATTERY_LEVEL_UUID))[0] <= 100
    assert disconnected == [client]


# --- unpair() -------------------------------------------------------------------------------------


async def test_unpair_disconnects(bench: Bench) -> None:
    # bleak's BlueZ backend calls Adapter1.RemoveDevice: BlueZ drops the connection, the
    # disconnected callback fires, and the next connect has to find the device again.
    disconnected: list[BleakClient] = []
    client = bench.bleak_client(disconnected_callback=disconnected.append)
    await client.connect()
    await client.unpair()
    await _until(lambda: disconnected == [client])
    assert not client.is_connected
    await client.connect()  # scans for it again, then connects
    assert client.is_connected
    await client.disconnect()


async def test_unpair_of_an_unknown_device_is_not_found(bench: Bench) -> None:
    # RemoveDevice of a device BlueZ does not know: org.bluez.Error.DoesNotExist, which bleak
    # raises as BleakDeviceNotFoundError.
    with pytest.raises(BleakDeviceNotFoundError):
        await bench.bleak_client(bench.absent).unpair()


# --- Service Changed ------------------------------------------------------------------------------


async def test_the_central_enables_service_changed_indications(bench: Bench) -> None:
    # BlueZ's GATT client registers for Service Changed indications (CCCD 0x0002) while it
    # initialises the connection. BlueZ hides the GATT service from D-Bus, so only the
    # peripheral can see it: simulator only.
    speaker = bench.speaker
    server = speaker.device.gatt_server
    changed = next(
        a
        for a in server.attributes
        if isinstance(a, Characteristic) and a.uuid == GATT_SERVICE_CHANGED_CHARACTERISTIC
    )
    async with bench.bleak_client() as client:
        assert _SERVICE_CHANGED not in {c.uuid for c in client.services.characteristics.values()}
        (cccds,) = server.subscribers.values()
        assert cccds == {changed.handle: b"\x02\x00"}


_TEST_SERVICE = "9d513f40-5c89-42dc-9688-2cfa30f2d9e7"
_TEST_CHARACTERISTIC = "e809cb2f-34e3-42a1-ba92-22db2495cd6a"


async def test_a_notification_sent_before_the_cccd_write_response_arrives(bench: Bench) -> None:
    # bleak's integration test_issue_1885, written for the simulator: a peripheral that sends a
    # notification (forced: to every bearer it serves) before it answers the CCCD write. On
    # BlueZ it arrives; bumble's server only serves bearers that wrote a CCCD it manages, which
    # BlueZ did when it enabled Service Changed indications.
    speaker = bench.speaker
    device = speaker.device
    enabled = False

    def on_cccd_read(_connection: Connection) -> bytes:
        return b"\x01\x00" if enabled else b"\x00\x00"

    async def on_cccd_write(_connection: Connection, value: bytes) -> None:
        nonlocal enabled
        enabled = value == b"\x01\x00"
        await device.notify_subscribers(characteristic, b"test", force=True)

    characteristic = Characteristic[bytes](
        _TEST_CHARACTERISTIC,
        Characteristic.Properties.NOTIFY,
        Attribute.Permissions(0),
        descriptors=[
            Descriptor(
                GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
                Attribute.Permissions.WRITEABLE | Attribute.Permissions.READABLE,
                AttributeValue[bytes](on_cccd_read, on_cccd_write),
            )
        ],
    )
    device.add_service(Service(_TEST_SERVICE, [characteristic]))
    async with bench.bleak_client(services=[_TEST_SERVICE]) as client:
        inbox: asyncio.Queue[bytes] = asyncio.Queue()

        def on_notification(_c: BleakGATTCharacteristic, data: bytearray) -> None:
            inbox.put_nowait(bytes(data))

        await client.start_notify(_TEST_CHARACTERISTIC, on_notification)
        assert await asyncio.wait_for(inbox.get(), 3.0) == b"test"


# --- notifications (also on hardware; the simulator-side details are in test_sim_bluez_parity) ----


def _with(client: BleakClient, *, notify: bool) -> BleakGATTCharacteristic:
    """A characteristic that can (or, readable, cannot) notify or indicate."""
    for char in client.services.characteristics.values():
        can = bool({"notify", "indicate"} & set(char.properties))
        if can == notify and (notify or "read" in char.properties):
            return char
    pytest.skip("the bench device has no such characteristic")


async def test_stop_notify_without_a_session_is_refused(bench: Bench) -> None:
    # BlueZ StopNotify without a session: org.bluez.Error.Failed "No notify session started".
    async with bench.bleak_client() as client:
        char = _with(client, notify=True)
        with pytest.raises(BleakDBusError, match="No notify session started"):
            await client.stop_notify(char)


async def test_a_second_start_notify_is_already_notifying(bench: Bench) -> None:
    # BlueZ: org.bluez.Error.Failed "Already notifying"; bleak has already replaced the callback.
    async with bench.bleak_client() as client:
        char = _with(client, notify=True)
        await client.start_notify(char, lambda _c, _d: None)
        with pytest.raises(BleakDBusError, match="Already notifying"):
            await client.start_notify(char, lambda _c, _d: None)
        await client.stop_notify(char)


async def test_start_notify_without_notify_or_indicate_is_not_supported(bench: Bench) -> None:
    # BlueZ checks the properties first: org.bluez.Error.NotSupported.
    async with bench.bleak_client() as client:
        with pytest.raises(BleakDBusError) as caught:
            await client.start_notify(_with(client, notify=False), lambda _c, _d: None)
        assert caught.value.dbus_error == "org.bluez.Error.NotSupported"


async def test_services_are_reset_after_disconnect(bench: Bench) -> None:
    # bleak's BlueZ backend sets services to None on disconnection; BleakClient.services then
    # raises, and a reconnect resolves them again.
    client = bench.bleak_client()
    await client.connect()
    count = len(client.services.characteristics)
    await client.disconnect()
    with pytest.raises(BleakError, match="Service Discovery has not been performed"):
        _ = client.services
    await client.connect()
    assert len(client.services.characteristics) == count
    await client.disconnect()
