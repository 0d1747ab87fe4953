"""Conformance: where bleak's BlueZ backend behaves in a way of its own, the simulator does too.

Each test states the BlueZ behaviour (from BlueZ and bleak's ``bluezdbus`` backend) and checks
it against the simulator through bleak's public API. Where bleak's real BlueZ classes can be
exercised without D-Bus (their constructors), the test checks them too, so a bleak upgrade that
changes the behaviour shows up here. docs/testing.md lists what still differs.
"""

from __future__ import annotations

import pytest
from bleak import BleakClient, BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.exc import (
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)
from tests._waiting import until as _until

from wking_device.ble import discover
from wking_device.ble._discovery import PASSIVE_OR_PATTERNS, bluez_scanner_args
from wking_device.errors import UsageError
from wking_device.protocol import (
    BATTERY_LEVEL_UUID,
    MANUFACTURER_NAME_UUID,
    WKING_COMMAND_CHAR_UUID,
    WKING_SERVICE_UUID,
)
from wking_device.sim import SimWorld, SpeakerSpec

FLAGS_06 = OrPattern(0, AdvertisementDataType.FLAGS, b"\x06")


# --- passive scanning needs or_patterns (issue 10, defect 4) --------------------------------------


def test_bluez_refuses_a_passive_scan_without_or_patterns_and_takes_ours() -> None:
    bluez = pytest.importorskip("bleak.backends.bluezdbus.scanner")  # dbus-fast: Linux only
    with pytest.raises(BleakError, match="or_patterns"):
        bluez.BleakScannerBlueZDBus(None, None, "passive", bluez=BlueZScannerArgs())
    # The arguments wking passes construct (the constructor does not touch D-Bus).
    bluez.BleakScannerBlueZDBus(None, None, "passive", bluez=bluez_scanner_args("passive", None))


async def test_the_simulator_refuses_a_passive_scan_without_or_patterns() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        with pytest.raises(BleakError, match="passive scanning mode requires bluez or_patterns"):
            BleakScanner(scanning_mode="passive", backend=world.backend.scanner)
        with pytest.raises(BleakError, match="or_patterns"):
            await BleakScanner.discover(
                0.05, scanning_mode="passive", bluez={}, backend=world.backend.scanner
            )


async def test_a_passive_scan_reports_only_what_a_pattern_matches() -> None:
    # BlueZ's advertisement monitor: an advertisement is reported when one of the or_patterns
    # (start, AD type, content) is found in it.
    async with SimWorld.fleet(2, adv_interval_ms=20) as world:
        none_match = BlueZScannerArgs(
            or_patterns=[OrPattern(0, AdvertisementDataType.FLAGS, b"\x1a")]
        )
        assert (
            await BleakScanner.discover(
                0.15, scanning_mode="passive", bluez=none_match, backend=world.backend.scanner
            )
            == []
        )
        by_company = BlueZScannerArgs(
            or_patterns=[
                OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, b"\xff\xffWK")
            ]
        )
        found = await BleakScanner.discover(
            0.15, scanning_mode="passive", bluez=by_company, backend=world.backend.scanner
        )
        assert {d.address for d in found} == {s.address for s in world.speakers}


async def test_discover_passive_works_on_the_simulator_as_on_bluez() -> None:
    assert FLAGS_06 in PASSIVE_OR_PATTERNS
    async with SimWorld.fleet(3, adv_interval_ms=20) as world:
        speakers = await discover(0.2, backend=world.backend, scanning_mode="passive")
        assert {s.address for s in speakers} == {s.address for s in world.speakers}
        assert all(s.name is None for s in speakers)  # names come in scan responses only
        assert all(s.model != "unknown" for s in speakers)  # from the manufacturer data
    assert WKING_SERVICE_UUID


# --- notifications --------------------------------------------------------------------------------


async def _connected(world: SimWorld) -> BleakClient:
    client = BleakClient(world.speakers[0].address, timeout=5, backend=world.backend.client)
    await client.connect()
    return client


async def test_stop_notify_when_not_notifying_and_after_disconnect() -> None:
    # BlueZ StopNotify without a session: org.bluez.Error.Failed "No notify session started".
    # After a disconnection bleak raises a plain BleakError before BlueZ is asked (the facade
    # finds the services reset; the BlueZ backend itself checks "Not connected").
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        client = await _connected(world)
        with pytest.raises(BleakDBusError, match="No notify session started") as caught:
            await client.stop_notify(BATTERY_LEVEL_UUID)
        assert caught.value.dbus_error == "org.bluez.Error.Failed"
        char = client.services.get_characteristic(BATTERY_LEVEL_UUID)
        assert char is not None
        await client.start_notify(char, lambda _c, _d: None)
        await client.disconnect()
        with pytest.raises(BleakError) as after:
            await client.stop_notify(char)
        assert not isinstance(after.value, BleakDBusError)
        with pytest.raises(BleakError, match="Not connected"):
            await client._backend.stop_notify(char)  # the backend's own check


async def test_a_second_start_notify_is_already_notifying() -> None:
    # BlueZ: org.bluez.Error.Failed "Already notifying"; bleak's BlueZ backend has replaced the
    # callback before the call failed, so the second callback is the one that receives.
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        client = await _connected(world)
        first: list[int] = []
        second: list[int] = []
        await client.start_notify(BATTERY_LEVEL_UUID, lambda _c, d: first.append(d[0]))
        with pytest.raises(BleakDBusError, match="Already notifying") as caught:
            await client.start_notify(BATTERY_LEVEL_UUID, lambda _c, d: second.append(d[0]))
        assert caught.value.dbus_error == "org.bluez.Error.Failed"
        await world.speakers[0].set_battery(42)
        await _until(lambda: second == [42])
        assert first == []
        await client.disconnect()


async def test_start_notify_without_notify_or_indicate_is_not_supported() -> None:
    # BlueZ checks the properties before anything else: org.bluez.Error.NotSupported.
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        client = await _connected(world)
        with pytest.raises(BleakDBusError) as caught:
            await client.start_notify(MANUFACTURER_NAME_UUID, lambda _c, _d: None)
        assert caught.value.dbus_error == "org.bluez.Error.NotSupported"
        await client.disconnect()


# --- writes without response ----------------------------------------------------------------------


async def test_a_write_without_response_longer_than_mtu_minus_3_is_refused() -> None:
    # BlueZ never sends a PDU larger than the MTU: "Failed to initiate write". At MTU - 3 bytes
    # the write goes through.
    spec = SpeakerSpec.for_index(1, adv_interval_ms=20, mtu=23)
    async with SimWorld([spec]) as world:
        client = await _connected(world)
        assert client.mtu_size == 23
        with pytest.raises(BleakDBusError, match="Failed to initiate write"):
            await client.write_gatt_char(WKING_COMMAND_CHAR_UUID, bytes(21), response=False)
        await client.write_gatt_char(WKING_COMMAND_CHAR_UUID, bytes(20), response=False)
        assert client.is_connected
        await client.disconnect()


async def test_a_write_without_response_needs_the_property() -> None:
    # BlueZ: NotSupported, which bleak's BlueZ backend reports as ATT REQUEST_NOT_SUPPORTED.
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        client = await _connected(world)
        with pytest.raises(BleakGATTProtocolError) as caught:
            await client.write_gatt_char(BATTERY_LEVEL_UUID, b"\x01", response=False)
        assert caught.value.code == BleakGATTProtocolErrorCode.REQUEST_NOT_SUPPORTED
        await client.disconnect()


# --- services -------------------------------------------------------------------------------------


async def test_services_are_reset_after_disconnect() -> None:
    # bleak's BlueZ backend sets services to None on disconnection; BleakClient.services then
    # raises, and a reconnect discovers them again.
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        client = await _connected(world)
        assert client.services.get_characteristic(BATTERY_LEVEL_UUID) is not None
        await client.disconnect()
        with pytest.raises(BleakError, match="Service Discovery has not been performed"):
            _ = client.services
        await client.connect()
        assert client.services.get_characteristic(BATTERY_LEVEL_UUID) is not None
        await client.disconnect()


# --- connection slots -----------------------------------------------------------------------------


async def test_a_connect_beyond_the_adapters_slots_fails_as_on_bluez() -> None:
    # A controller holds a limited number of connections; BlueZ reports the controller's
    # Connection Limit Exceeded as org.bluez.Error.Failed le-connection-concurrent-connection-limit.
    async with SimWorld.fleet(3, adv_interval_ms=20, connection_slots=2) as world:
        clients = [
            BleakClient(s.address, timeout=5, backend=world.backend.client) for s in world.speakers
        ]
        await clients[0].connect()
        await clients[1].connect()
        with pytest.raises(BleakDBusError, match="le-connection-concurrent-connection-limit"):
            await clients[2].connect()
        assert not clients[2].is_connected
        await clients[0].disconnect()
        await clients[2].connect()  # a slot is free again
        assert clients[2].is_connected
        for client in clients:
            await client.disconnect()


def test_connection_slots_must_be_positive() -> None:
    with pytest.raises(UsageError):
        SimWorld(connection_slots=0)


# --- Service Changed: a peripheral that refuses the registration ----------------------------------


async def test_a_refused_service_changed_registration_does_not_fail_the_connect() -> None:
    # Adversarial peripheral: the Service Changed CCCD answers the central's write with an ATT
    # error. BlueZ logs "Failed to register handler for Service Changed" and carries on; the
    # connection and its services must not depend on the peer accepting it.
    from bumble import att  # noqa: PLC0415 - bumble is the simulator's, imported here only
    from bumble.gatt import (  # noqa: PLC0415
        GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
        GATT_SERVICE_CHANGED_CHARACTERISTIC,
    )

    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        server = world.speakers[0].device.gatt_server
        changed = next(
            a
            for a in server.attributes
            if getattr(a, "uuid", None) == GATT_SERVICE_CHANGED_CHARACTERISTIC
        )
        cccd = next(
            a
            for a in server.attributes
            if a.handle > changed.handle
            and a.type == GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR
        )

        def refuse(_connection: object, _value: bytes) -> None:
            raise att.ATT_Error(att.ErrorCode.WRITE_NOT_PERMITTED)

        cccd.value = att.AttributeValue(lambda _c: b"\x00\x00", refuse)
        client = await _connected(world)
        assert client.is_connected
        assert client.services.get_characteristic(BATTERY_LEVEL_UUID) is not None
        assert server.subscribers == {}
        await client.disconnect()


async def test_a_hostile_address_string_is_only_not_found() -> None:
    # An address string is compared, never parsed into anything else: a malformed one with a
    # terminal escape is not found (as on BlueZ), after the scan, and unpair() refuses it too.
    hostile = "C0:57:4B:00:00:01\x1b[2J; rm -rf /"
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        client = BleakClient(hostile, timeout=0.2, backend=world.backend.client)
        with pytest.raises(BleakDeviceNotFoundError):
            await client.connect()
        with pytest.raises(BleakDeviceNotFoundError):
            await client.unpair()
        assert not world.speakers[0].connected
