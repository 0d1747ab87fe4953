"""Behaviour of real bleak backends that the simulator does not show by itself.

Each test wraps the simulator's backend classes in a subclass that behaves (or records) as bleak's
BlueZ backend does at that one point, and checks that the BLE layer copes with a real adapter.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import pytest
from bleak.backends.device import BLEDevice
from bumble.gatt import Characteristic, CharacteristicValue, Service

from wking_device.ble import BleBackend, RetryPolicy, Speaker, discover, read_all
from wking_device.config import BleSettings
from wking_device.errors import AdapterUnavailable, BluetoothError
from wking_device.protocol import BATTERY_LEVEL_UUID, BATTERY_SERVICE_UUID
from wking_device.sim import SimWorld, SpeakerSpec


def _world() -> SimWorld:
    # two adapters: the simulator honours bleak's bluez={"adapter": ...} as BlueZ does
    return SimWorld(
        [SpeakerSpec.for_index(1, adv_interval_ms=20, mtu=247)], adapters=["hci0", "hci1"]
    )


def _bluez_mtu_client(base: Any) -> Any:
    """The simulator's client with BlueZ's ``mtu_size``: 23 and a warning (bleak 3.1)."""

    class BlueZMtuClient(base):  # type: ignore[misc, valid-type]
        @property
        def mtu_size(self) -> int:
            warnings.warn(
                "Using default MTU value. Call _acquire_mtu() or set _mtu_size first to avoid "
                "this warning.",
                stacklevel=2,
            )
            return 23

    return BlueZMtuClient


async def test_commands_use_the_negotiated_mtu_without_bluez_mtu_size_warning() -> None:
    async with _world() as world:
        backend = BleBackend(world.backend.scanner, _bluez_mtu_client(world.backend.client))
        sim = world.speakers[0]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # BlueZ's warning would fail the test
            async with Speaker(sim.address, backend=backend) as speaker:
                before = sim.operations
                await speaker.ping(bytes(200))
                writes = sim.operations - before
    # a 208-byte frame fits one write at MTU 247; at BlueZ's default 23 it would take 11
    assert writes == 1


def _bluez_args_backend(world: SimWorld, seen: list[tuple[str, dict[str, Any]]]) -> BleBackend:
    """The simulator's backend classes, recording the ``bluez=`` arguments bleak hands them."""

    class BlueZArgsScanner(world.backend.scanner):  # type: ignore[misc, name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.append(("scan", dict(kwargs.get("bluez", {}))))
            super().__init__(*args, **kwargs)

    class BlueZArgsClient(world.backend.client):  # type: ignore[misc, name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.append(("connect", dict(kwargs.get("bluez", {}))))
            super().__init__(*args, **kwargs)

    return BleBackend(BlueZArgsScanner, BlueZArgsClient)


async def test_a_session_on_another_adapter_scans_and_connects_on_that_adapter() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    async with _world() as world:
        backend = _bluez_args_backend(world, seen)
        async with Speaker(world.speakers[0].address, backend=backend, adapter="hci1") as sp:
            assert sp.is_connected
    # the address is re-found on hci1: a BLEDevice from hci0 would connect through hci0
    assert seen == [("scan", {"adapter": "hci1"}), ("connect", {"adapter": "hci1"})]


async def test_discovery_scans_on_the_adapter_asked_for() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    async with _world() as world:
        found = await discover(
            2.0, backend=_bluez_args_backend(world, seen), count=1, adapter="hci1"
        )
    assert [s.address for s in found] == [world.speakers[0].address]
    assert seen == [("scan", {"adapter": "hci1"})]


async def test_a_device_bluez_saw_on_another_adapter_is_refound_on_ours() -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    async with _world() as world:
        address = world.speakers[0].address
        path = f"/org/bluez/hci0/dev_{address.replace(':', '_')}"
        device = BLEDevice(address, "W-KING", {"path": path, "props": {}})
        backend = _bluez_args_backend(world, seen)
        async with Speaker(device, backend=backend, adapter="hci0"):
            pass
        assert seen == [("connect", {"adapter": "hci0"})]  # fresh and on hci0: used as is
        seen.clear()
        async with Speaker(device, backend=backend, adapter="hci1"):
            pass
        assert seen == [("scan", {"adapter": "hci1"}), ("connect", {"adapter": "hci1"})]


async def test_a_device_with_two_battery_services_is_usable() -> None:
    """Earbuds and some speakers carry two Battery services; bleak's UUID lookup then raises."""
    async with _world() as world:
        sim = world.speakers[0]
        second = Characteristic(
            BATTERY_LEVEL_UUID,
            Characteristic.READ | Characteristic.NOTIFY,
            Characteristic.Permissions.READABLE,
            CharacteristicValue(read=lambda _connection: bytes((7,))),
        )
        sim.device.add_service(Service(BATTERY_SERVICE_UUID, [second]))
        async with Speaker(sim.address, backend=world.backend) as speaker:
            assert speaker.has_vendor_channel
            assert await speaker.read_battery() == sim.state.battery_level  # the first service
            info = await speaker.read_info()
    assert info.battery == sim.state.battery_level
    assert info.manufacturer == "W-KING"


async def test_a_backend_refusing_the_device_gives_a_typed_error_and_frees_the_slot() -> None:
    # bleak's real BlueZ client reads the D-Bus path from BLEDevice.details when constructed;
    # a device the simulator discovered has none. What escapes must still be one of ours.
    bluez = pytest.importorskip("bleak.backends.bluezdbus.client")  # dbus-fast: Linux only
    async with _world() as world:
        (found,) = await discover(2.0, backend=world.backend, count=1)
        backend = BleBackend(world.backend.scanner, bluez.BleakClientBlueZDBus)
        speaker = Speaker(found, backend=backend, retry=RetryPolicy(attempts=1))
        with pytest.raises(BluetoothError) as caught:
            await speaker.connect()
        chain = [caught.value]
        while chain[-1].__cause__ is not None:
            chain.append(chain[-1].__cause__)
        assert isinstance(chain[-1], TypeError)  # the foreign error stays in the chain
        assert speaker.limiter is not None
        assert speaker.limiter.active == 0


async def test_the_configured_adapter_is_used_by_sessions_and_fleet_reads() -> None:
    # `[ble] adapter = "hci1"` in config.toml reaches every session through BleSettings
    seen: list[tuple[str, dict[str, Any]]] = []
    settings = BleSettings(adapter="hci1")
    async with _world() as world:
        backend = _bluez_args_backend(world, seen)
        result = await read_all([world.speakers[0].address], backend=backend, settings=settings)
    assert result.ok, result.errors
    assert seen
    assert all(args == {"adapter": "hci1"} for _, args in seen), seen


@pytest.mark.skipif(sys.platform != "linux", reason="bleak's BlueZ backend is Linux's")
async def test_no_bluez_is_one_clear_adapter_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # bleak's real BlueZ backend, with a system bus that is not there (as on this CI machine)
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/wking-test-bus")
    with pytest.raises(AdapterUnavailable) as info:
        await discover(0.5)
    assert "cannot reach BlueZ over D-Bus" in info.value.message
    assert "bluetoothd" in (info.value.remedy or "")
