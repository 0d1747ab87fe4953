"""Discovery against the simulator through bleak: matching, dedupe, RSSI, malformed adverts."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from bleak.backends.scanner import BaseBleakScanner
from bleak.exc import BleakError
from tests._waiting import until

from wking_device.ble import BleBackend, DiscoveredSpeaker, SpeakerScanner, discover, find
from wking_device.errors import AdapterUnavailable, DeviceNotFound, UnsupportedOperation
from wking_device.models import OperationKind, Outcome
from wking_device.protocol import MODELS
from wking_device.sim import SimWorld, SpeakerSpec

if TYPE_CHECKING:
    from tests.ble.conftest import Recorder


async def test_discover_matches_models_names_and_rssi(recorder: Recorder) -> None:
    async with SimWorld.fleet(3, adv_interval_ms=20) as world:
        found = await discover(2.0, backend=world.backend, events=recorder.bus, count=3)
        assert len(found) == 3
        by_address = {s.address: s for s in found}
        for sim in world.speakers:
            speaker = by_address[sim.address]
            assert speaker.name == sim.name
            assert speaker.model == sim.spec.model_id
            assert speaker.model in MODELS
            assert speaker.rssi == sim.rssi
            assert speaker.address_type == "random"
            assert speaker.tx_power == sim.spec.tx_power
            assert speaker.device.address == sim.address
        # strongest first
        assert [s.rssi for s in found] == sorted((s.rssi for s in found), reverse=True)
    scans = recorder.of(OperationKind.SCAN)
    assert len(scans) == 1
    assert scans[0].outcome is Outcome.OK
    assert scans[0].detail["speakers"] == 3
    assert scans[0].detail["malformed"] == 0


async def test_deduplicated_by_address_latest_rssi_wins() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        async with SpeakerScanner(backend=world.backend, report_updates=True) as scanner:
            assert await scanner.wait_for(1, 2.0)
            first = scanner.speakers[sim.address.upper()]
            sim.rssi = first.rssi - 17
            for _ in range(100):
                await asyncio.sleep(0.02)
                if scanner.speakers[sim.address.upper()].rssi == sim.rssi:
                    break
            assert scanner.adverts >= 2
        assert len(scanner.speakers) == 1
        assert scanner.found()[0].rssi == first.rssi - 17


async def test_stream_yields_each_speaker_once_and_ends_on_stop() -> None:
    async with SimWorld.fleet(4, adv_interval_ms=20) as world:
        seen: list[DiscoveredSpeaker] = []
        callback_seen: list[str] = []
        scanner = SpeakerScanner(
            backend=world.backend, on_speaker=lambda s: callback_seen.append(s.address)
        )
        await scanner.start()

        async def stop_later() -> None:
            await scanner.wait_for(4, 2.0)
            await asyncio.sleep(0.1)  # more adverts of the same speakers arrive meanwhile
            await scanner.stop()

        stopper = asyncio.create_task(stop_later())
        async with asyncio.timeout(5):
            seen.extend([speaker async for speaker in scanner])
        await stopper
        assert sorted(s.address for s in seen) == sorted(s.address for s in world.speakers)
        assert sorted(callback_seen) == sorted(s.address for s in seen)
        # a stream started late (here: after the stop) yields what was seen, then ends
        replay = [speaker async for speaker in scanner]
        assert sorted(s.address for s in replay) == sorted(s.address for s in seen)


async def test_foreign_devices_are_ignored_but_find_accepts_any_address() -> None:
    foreign = SpeakerSpec.for_index(7, name="Kitchen Radio")
    async with SimWorld([foreign, SpeakerSpec.for_index(1)]) as world:
        sim = world.speaker(foreign.address)
        # A device that is not W-KING by name: blank its vendor advert so nothing matches.
        await sim.device.stop_advertising()
        sim.adv_data = bytes.fromhex("020106")
        await sim.start_advertising()
        found = await discover(0.4, backend=world.backend)
        assert [s.address for s in found] == [world.speakers[1].address]
        device = await find(foreign.address.lower(), timeout=2.0, backend=world.backend)
        assert device.address == foreign.address


async def test_malformed_advertisements_are_skipped_and_counted(recorder: Recorder) -> None:
    async with SimWorld.fleet(2, adv_interval_ms=20) as world:
        bad = world.speakers[0]
        await bad.device.stop_advertising()
        # flags + manufacturer data under 0xFFFF with the W-KING magic but 5 bytes, not 4
        bad.adv_data = bytes.fromhex("020106") + bytes.fromhex("08ffffff574b0200ff")
        await bad.start_advertising()
        found = await discover(0.6, backend=world.backend, events=recorder.bus)
        assert [s.address for s in found] == [world.speakers[1].address]
    scan = recorder.of(OperationKind.SCAN)[0]
    assert scan.detail["malformed"] >= 1
    assert scan.detail["speakers"] == 1


class _RaisingProfileError(Exception):
    pass


class _ExplodingProfile:
    """A third-party profile with a bug: discovery must survive it."""

    id = "exploding"
    service_uuid = "0000ffff-0000-1000-8000-00805f9b34fb"
    command_uuid = service_uuid
    notify_uuid = service_uuid
    models: ClassVar[dict[str, Any]] = {}

    def match(self, name: str | None, *args: Any) -> str | None:
        raise _RaisingProfileError(name)

    def new_codec(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def test_a_raising_profile_counts_as_malformed_not_a_crash() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        async with SpeakerScanner(backend=world.backend, profile=_ExplodingProfile()) as scanner:
            await until(lambda: scanner.adverts >= 3)
        assert scanner.adverts > 0
        assert scanner.malformed == scanner.adverts
        assert scanner.speakers == {}


async def test_find_unknown_address_raises_device_not_found(recorder: Recorder) -> None:
    async with SimWorld.fleet(1) as world:
        with pytest.raises(DeviceNotFound) as caught:
            await find("C0:57:4B:99:99:99", timeout=0.3, backend=world.backend, events=recorder.bus)
    assert caught.value.address == "C0:57:4B:99:99:99"
    assert "discover()" in str(caught.value)  # the library remedy
    assert "wking scan" in caught.value.cli_message()  # the CLI's
    assert recorder.of(OperationKind.SCAN)


async def test_out_of_range_speaker_is_not_found() -> None:
    async with SimWorld.fleet(2, adv_interval_ms=20) as world:
        world.speakers[0].faults.in_range = False
        found = await discover(0.5, backend=world.backend)
        assert [s.address for s in found] == [world.speakers[1].address]


class _BrokenScanner(BaseBleakScanner):
    """A scanner backend whose adapter is gone (what BlueZ-less hosts look like)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(args[0] if args else None, args[1] if len(args) > 1 else None)

    async def start(self) -> None:
        raise BleakError("org.freedesktop.DBus.Error.ServiceUnknown: no BlueZ")

    async def stop(self) -> None:  # pragma: no cover - never started
        return


async def test_scanner_that_cannot_start_raises_adapter_unavailable(recorder: Recorder) -> None:
    with pytest.raises(AdapterUnavailable) as caught:
        await discover(0.1, backend=BleBackend(scanner=_BrokenScanner), events=recorder.bus)
    assert "SimWorld" in str(caught.value)
    assert "--simulate" in caught.value.cli_message()
    (scan,) = recorder.of(OperationKind.SCAN)
    assert scan.outcome is Outcome.ERROR
    assert scan.error == "adapter_unavailable"


async def test_a_passive_scan_passes_bluez_its_or_patterns(recorder: Recorder) -> None:
    # bleak's real BlueZ scanner refuses a passive scan without or_patterns in its constructor
    # (issue 10, defect 4: discover(scanning_mode="passive") only worked in the simulator).
    # With the catch-all patterns it gets as far as D-Bus: a scan where BlueZ runs, else
    # AdapterUnavailable - never "unsupported".
    bluez = pytest.importorskip("bleak.backends.bluezdbus.scanner")  # dbus-fast: Linux only
    try:
        await discover(
            0.1,
            backend=BleBackend(scanner=bluez.BleakScannerBlueZDBus),
            events=recorder.bus,
            scanning_mode="passive",
        )
    except AdapterUnavailable:
        (scan,) = recorder.of(OperationKind.SCAN)
        assert scan.error == "adapter_unavailable"


class _NoPassiveScanner(_BrokenScanner):
    """Refuses a passive scan in its constructor, as CoreBluetooth's backend does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "passive" in (*args, kwargs.get("scanning_mode")):
            raise BleakError("macOS does not support passive scanning")
        super().__init__(*args, **kwargs)


async def test_a_passive_scan_the_backend_refuses_is_a_typed_error(recorder: Recorder) -> None:
    with pytest.raises(UnsupportedOperation) as caught:
        await discover(
            0.1,
            backend=BleBackend(scanner=_NoPassiveScanner),
            events=recorder.bus,
            scanning_mode="passive",
        )
    assert "passive" in str(caught.value)
    (scan,) = recorder.of(OperationKind.SCAN)
    assert scan.outcome is Outcome.ERROR
    assert scan.error == "unsupported"
