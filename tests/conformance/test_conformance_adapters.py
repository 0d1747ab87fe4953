"""Conformance: several host adapters, as bleak's BlueZ backend sees them.

BlueZ behaviour checked here (bleak 3.1 ``bluezdbus``): a scan or an address-string connect
selects its adapter with ``bluez={"adapter": "hci1"}`` (the deprecated ``adapter=`` keyword
still works, with a ``DeprecationWarning``); an adapter BlueZ does not have fails the scan with
``BleakError("adapter 'hci9' not found")`` (``BlueZManager._check_adapter``); a ``BLEDevice``
connects through the adapter that saw it (its D-Bus path), whatever the client's adapter says;
each controller has its own connection slots; an adapter that is unplugged takes its
connections with it (every client's disconnected callback fires) and the devices it saw
(``BleakError("device 'dev_…' not found")``). Each adapter reports its own RSSI for a device.

Only the unknown-adapter check runs on hardware (``--hardware``): the others need two adapters
and a speaker placed between them, which the simulator provides.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDBusError, BleakError
from tests._waiting import until as _until

from wking_device.sim import AdapterSpec, SimWorld

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData
    from tests.conformance.conftest import Bench


async def _seen_on(
    world: SimWorld, adapter: str, address: str, within: float = 3.0
) -> tuple[BLEDevice, AdvertisementData] | None:
    found = await BleakScanner.find_device_by_address(
        address, timeout=within, backend=world.backend.scanner, bluez={"adapter": adapter}
    )
    if found is None:
        return None
    async with BleakScanner(backend=world.backend.scanner, bluez={"adapter": adapter}) as scanner:
        async for device, adv in scanner.advertisement_data():
            if device.address == address:
                return device, adv
    return None  # pragma: no cover - the loop ends only by returning


# --- runs on hardware too -------------------------------------------------------------------------


async def test_an_unknown_adapter_fails_the_scan(bench: Bench) -> None:
    scanner = BleakScanner(backend=bench.scanner, bluez={"adapter": "hci99"})
    with pytest.raises(BleakError, match="adapter 'hci99' not found"):
        await scanner.start()


async def test_an_address_string_on_an_unknown_adapter_fails_the_connect(bench: Bench) -> None:
    # bleak's BlueZ client scans on its adapter first; the scan fails as above.
    client = bench.bleak_client(bluez={"adapter": "hci99"}, timeout=1.0)
    with pytest.raises(BleakError, match="adapter 'hci99' not found"):
        await client.connect()
    assert not client.is_connected


# --- simulator: two adapters ----------------------------------------------------------------------


async def test_each_adapter_reports_its_own_rssi_and_is_selected_by_name() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        speaker = world.speakers[0]
        speaker.set_rssi(-40, adapter="hci0")
        speaker.set_rssi(-85, adapter="hci1")
        near = await _seen_on(world, "hci0", speaker.address)
        far = await _seen_on(world, "hci1", speaker.address)
        assert near is not None
        assert far is not None
        assert near[1].rssi == -40
        assert far[1].rssi == -85
        # the deprecated keyword still selects the adapter, as in bleak
        with pytest.warns(DeprecationWarning, match="adapter"):
            scanner = BleakScanner(backend=world.backend.scanner, adapter="hci1")
        async with scanner:
            async for _device, adv in scanner.advertisement_data():
                assert adv.rssi == -85
                break


async def test_a_device_connects_through_the_adapter_that_saw_it() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        speaker = world.speakers[0]
        seen = await _seen_on(world, "hci1", speaker.address)
        assert seen is not None
        # the client's own adapter setting does not matter for a BLEDevice (BlueZ: its path)
        async with BleakClient(
            seen[0], backend=world.backend.client, bluez={"adapter": "hci0"}, timeout=5
        ) as client:
            assert client.is_connected
            assert world.connected_on("hci1") == [speaker.address]
            assert world.connected_on("hci0") == []
        # an address string scans on (and connects through) the client's adapter
        async with BleakClient(
            speaker.address, backend=world.backend.client, bluez={"adapter": "hci0"}, timeout=5
        ):
            assert world.connected_on("hci0") == [speaker.address]
            assert world.connected_on("hci1") == []


async def test_a_speaker_out_of_an_adapters_reach_is_not_seen_there() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        speaker = world.speakers[0]
        speaker.set_rssi(None, adapter="hci1")
        assert await _seen_on(world, "hci1", speaker.address, within=0.5) is None
        assert await _seen_on(world, "hci0", speaker.address) is not None
        client = BleakClient(
            speaker.address, backend=world.backend.client, bluez={"adapter": "hci1"}, timeout=0.5
        )
        with pytest.raises(BleakError, match="not found"):
            await client.connect()


async def test_each_adapter_has_its_own_connection_slots() -> None:
    adapters = [AdapterSpec("hci0", connection_slots=1), AdapterSpec("hci1", connection_slots=2)]
    async with SimWorld.fleet(3, adv_interval_ms=20, adapters=adapters) as world:
        a, b, c = (s.address for s in world.speakers)

        def client(address: str, adapter: str) -> BleakClient:
            return BleakClient(
                address, backend=world.backend.client, bluez={"adapter": adapter}, timeout=5
            )

        first = client(a, "hci0")
        await first.connect()
        refused = client(b, "hci0")
        with pytest.raises(BleakDBusError, match="le-connection-concurrent-connection-limit"):
            await refused.connect()
        others = [client(b, "hci1"), client(c, "hci1")]
        for other in others:
            await other.connect()  # hci1's own two slots
        assert sorted(world.connected_on("hci1") or []) == sorted([b, c])
        for each in [first, *others]:
            await each.disconnect()


async def test_unplugging_an_adapter_drops_its_connections_and_devices() -> None:
    async with SimWorld.fleet(3, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        one, two, three = world.speakers
        dropped: list[BleakClient] = []
        on_hci1 = BleakClient(
            one.address,
            backend=world.backend.client,
            bluez={"adapter": "hci1"},
            disconnected_callback=dropped.append,
            timeout=5,
        )
        on_hci0 = BleakClient(
            two.address, backend=world.backend.client, bluez={"adapter": "hci0"}, timeout=5
        )
        await on_hci1.connect()
        await on_hci0.connect()
        seen_on_hci1 = await _seen_on(world, "hci1", three.address)
        assert seen_on_hci1 is not None

        await world.unplug_adapter("hci1")
        # a disconnect racing the loss returns at once (nothing can be sent on a gone adapter)
        async with asyncio.timeout(2):
            await on_hci1.disconnect()
        await _until(lambda: dropped == [on_hci1])
        assert not on_hci1.is_connected
        assert on_hci0.is_connected  # the other adapter's connection stays
        assert world.adapter_names == ["hci0"]
        with pytest.raises(BleakError, match="adapter 'hci1' not found"):
            await BleakScanner(backend=world.backend.scanner, bluez={"adapter": "hci1"}).start()
        # a device the unplugged adapter saw is gone with it
        stale = BleakClient(seen_on_hci1[0], backend=world.backend.client, timeout=2)
        with pytest.raises(BleakError, match=r"device 'dev_\w+' not found"):
            await stale.connect()

        assert dropped == [on_hci1]  # the callback fired once
        await world.plug_adapter("hci1")
        assert world.adapter_names == ["hci0", "hci1"]
        assert await _seen_on(world, "hci1", one.address) is not None
        await on_hci1.connect()  # from its address: scans on hci1 again
        assert world.connected_on("hci1") == [one.address]
        await on_hci1.disconnect()
        await on_hci0.disconnect()


async def test_the_default_adapter_is_the_first_present() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        await world.unplug_adapter("hci0")
        async with BleakClient(world.speakers[0].address, backend=world.backend.client, timeout=5):
            assert world.connected_on("hci1") == [world.speakers[0].address]
        await world.unplug_adapter("hci1")
        with pytest.raises(BleakError, match="No Bluetooth adapters found"):
            await BleakScanner(backend=world.backend.scanner).start()
