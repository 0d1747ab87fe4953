"""Adapters: slots counted from the adapter's real state, the pick among several, failover.

The slot view is read from the simulated adapter's state (every device its controller has
connected, whoever connected it) and, on BlueZ, from BlueZ's object manager: the pure function
that reads an object-manager answer is tested here on such a dict (no BlueZ on the test machine).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import pytest
from bleak import BleakClient
from dbus_fast import Variant
from tests._waiting import until as _until

from wking_device._redact import MAC_RE
from wking_device.ble import (
    AdapterCandidate,
    AdapterSlots,
    DiscoveredSpeaker,
    SessionKeeper,
    Speaker,
    SpeakerChanged,
    SpeakerScanner,
    SpeakerTracker,
    SpeakerUnavailable,
    adapter_slots,
    bluez_connected_by_adapter,
    limiter_for,
    pick_adapter,
    read_all,
)
from wking_device.ble._adapters import device_adapter
from wking_device.errors import AdapterUnavailable, BluetoothError, DeviceNotFound, UsageError
from wking_device.models import OperationKind, Outcome
from wking_device.sim import AdapterSpec, SimWorld

if TYPE_CHECKING:
    from tests.ble.conftest import Recorder

    from wking_device.ble import RetryPolicy
    from wking_device.config import BleSettings

from tests.ble.test_ble_sessions import FAST_BACKOFF

# --- the BlueZ object manager, read by a pure function --------------------------------------------


def test_bluez_connected_devices_are_counted_per_adapter() -> None:
    device = "org.bluez.Device1"
    objects = {
        "/org/bluez": {"org.bluez.AgentManager1": {}},
        "/org/bluez/hci0": {"org.bluez.Adapter1": {"Address": Variant("s", "00:1A:7D:DA:71:13")}},
        "/org/bluez/hci1": {"org.bluez.Adapter1": {}},
        "/org/bluez/hci0/dev_C0_57_4B_00_00_01": {
            device: {
                "Address": Variant("s", "c0:57:4b:00:00:01"),
                "Adapter": Variant("o", "/org/bluez/hci0"),
                "Connected": Variant("b", True),
            }
        },
        # connected by another program: counted all the same
        "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_FF": {
            device: {
                "Address": "AA:BB:CC:DD:EE:FF",
                "Adapter": "/org/bluez/hci0",
                "Connected": True,
            }
        },
        "/org/bluez/hci0/dev_C0_57_4B_00_00_02": {
            device: {
                "Address": "C0:57:4B:00:00:02",
                "Adapter": "/org/bluez/hci0",
                "Connected": False,
            }
        },
        # a service object under a device is not a device
        "/org/bluez/hci0/dev_C0_57_4B_00_00_01/service0010": {"org.bluez.GattService1": {}},
        # no Adapter property: the path tells
        "/org/bluez/hci2/dev_C0_57_4B_00_00_03": {
            device: {"Address": "C0:57:4B:00:00:03", "Connected": True}
        },
    }
    assert bluez_connected_by_adapter(objects) == {
        "hci0": frozenset({"C0:57:4B:00:00:01", "AA:BB:CC:DD:EE:FF"}),
        "hci1": frozenset(),
        "hci2": frozenset({"C0:57:4B:00:00:03"}),
    }
    assert bluez_connected_by_adapter({}) == {}


def test_free_slots_take_the_lower_limit_and_every_connection() -> None:
    two = frozenset({"C0:57:4B:00:00:01", "C0:57:4B:00:00:02"})
    assert AdapterSlots("hci0", present=True, limit=None, connected=two).free(5) == 3
    assert AdapterSlots("hci0", present=True, limit=3, connected=two).free(5) == 1
    assert AdapterSlots("hci0", present=True, limit=1, connected=two).free(5) == 0
    assert AdapterSlots("hci1", present=False, limit=None, connected=frozenset()).free(5) == 0


def test_pick_takes_a_free_slot_then_the_best_rssi_then_fewer_connections() -> None:
    near_full = AdapterCandidate("hci0", rssi=-40, free=0, connections=5)
    far = AdapterCandidate("hci1", rssi=-80, free=2, connections=1)
    mid = AdapterCandidate("hci2", rssi=-60, free=1, connections=3)
    mid_quiet = AdapterCandidate("hci3", rssi=-60, free=4, connections=0)
    assert pick_adapter([near_full, far]) == far  # the strongest has no free slot
    assert pick_adapter([near_full, far, mid]) == mid
    assert pick_adapter([mid, mid_quiet]) == mid_quiet  # a tie: fewer connections
    assert pick_adapter([near_full]) is None
    assert pick_adapter([]) is None


# --- the slot view on the simulator ---------------------------------------------------------------


async def test_a_connection_made_by_another_program_takes_one_of_our_slots(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    settings = fast_settings.replace(max_connections=2)
    async with SimWorld.fleet(3, adv_interval_ms=20) as world:
        a, b, c = (s.address for s in world.speakers)
        other_program = BleakClient(a, backend=world.backend.client, timeout=5)
        await other_program.connect()
        slots = await adapter_slots(backend=world.backend)
        assert slots is not None
        assert slots.connected == {a}
        limiter = limiter_for(world.backend, settings.max_connections)
        assert await limiter.available() == 1
        assert limiter.foreign == 1

        first = Speaker(b, backend=world.backend, settings=settings, retry=fast_retry)
        await first.connect()
        assert await limiter.available() == 0  # our own connection is not foreign
        assert limiter.foreign == 1
        second = Speaker(c, backend=world.backend, settings=settings, retry=fast_retry)
        waiting = asyncio.create_task(second.connect())
        await _until(lambda: limiter.waiting == 1)
        assert not world.speakers[2].connected  # it waits for a slot instead of trying
        await other_program.disconnect()  # the other program lets go: the slot is ours
        async with asyncio.timeout(10):
            await waiting
        assert second.is_connected
        await first.disconnect()
        await second.disconnect()


async def test_a_controller_limit_lower_than_configured_wins(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    # max_connections says 5; the controller holds 1: the second session waits for a slot
    # instead of failing with BlueZ's le-connection-concurrent-connection-limit.
    async with SimWorld.fleet(2, adv_interval_ms=20, connection_slots=1) as world:
        a, b = (s.address for s in world.speakers)
        limiter = limiter_for(world.backend, fast_settings.max_connections)
        first = Speaker(a, backend=world.backend, settings=fast_settings, retry=fast_retry)
        await first.connect()
        second = Speaker(b, backend=world.backend, settings=fast_settings, retry=fast_retry)
        waiting = asyncio.create_task(second.connect())
        await _until(lambda: limiter.waiting == 1)
        assert limiter.effective_limit == 1
        await first.disconnect()
        async with asyncio.timeout(10):
            await waiting
        assert second.is_connected
        await second.disconnect()


# --- several adapters -----------------------------------------------------------------------------


async def test_a_speaker_connects_through_the_adapter_with_a_free_slot_and_the_best_rssi(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    adapters = [AdapterSpec("hci0"), AdapterSpec("hci1", connection_slots=1)]
    async with SimWorld.fleet(3, adv_interval_ms=20, adapters=adapters) as world:
        one, two, three = world.speakers
        for speaker in world.speakers:
            speaker.set_rssi(-80, adapter="hci0")
            speaker.set_rssi(-45, adapter="hci1")
        first = Speaker(
            one.address,
            backend=world.backend,
            settings=fast_settings,
            retry=fast_retry,
            adapters=["hci0", "hci1"],
        )
        await first.connect()
        assert first.adapter == "hci1"  # the best RSSI
        assert world.connected_on("hci1") == [one.address]
        # another program fills nothing more on hci1: its one slot is ours now
        second = Speaker(
            two.address,
            backend=world.backend,
            settings=fast_settings,
            retry=fast_retry,
            adapters=["hci0", "hci1"],
        )
        await second.connect()
        assert second.adapter == "hci0"  # hci1 has no free slot: the next best
        assert world.connected_on("hci0") == [two.address]
        await first.disconnect()
        await second.disconnect()
        # a speaker only one adapter sees goes through that one
        three.set_rssi(None, adapter="hci1")
        async with Speaker(
            three.address,
            backend=world.backend,
            settings=fast_settings,
            retry=fast_retry,
            adapters=["hci0", "hci1"],
        ) as third:
            assert third.adapter == "hci0"


async def test_no_adapter_sees_the_speaker(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        speaker = world.speakers[0]
        speaker.set_rssi(None, adapter="hci0")
        speaker.set_rssi(None, adapter="hci1")
        session = Speaker(
            speaker.address,
            backend=world.backend,
            settings=fast_settings.replace(scan_timeout=1.0),  # not found when the scan ends
            retry=fast_retry,
            adapters=["hci0", "hci1", "hci7"],  # an unknown one is passed over
        )
        with pytest.raises(DeviceNotFound, match="any of 3 adapters"):
            await session.connect()
    with pytest.raises(UsageError):
        Speaker("C0:57:4B:00:00:01", adapters=[])
    # a name that is not one path element never reaches the stack (its errors repeat it)
    for hostile in ("../hci0", "hci0\n\x1b[2J", "hci0/dev_C0_57_4B_00_00_01", ""):
        with pytest.raises(UsageError) as info:
            Speaker("C0:57:4B:00:00:01", adapters=["hci0", hostile])
        assert "\x1b" not in str(info.value)
        assert "\n" not in str(info.value)
        with pytest.raises(UsageError):
            Speaker("C0:57:4B:00:00:01", adapter=hostile or "..")


async def test_a_kept_session_fails_over_when_its_adapter_is_unplugged(
    fast_settings: BleSettings, fast_retry: RetryPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        sim = world.speakers[0]
        sim.set_rssi(-40, adapter="hci0")
        sim.set_rssi(-75, adapter="hci1")
        with caplog.at_level(logging.DEBUG, logger="wking_device"):
            async with SessionKeeper(
                backend=world.backend,
                settings=fast_settings,
                backoff=FAST_BACKOFF,
                retry=fast_retry,
                adapters=["hci0", "hci1"],
            ) as keeper:
                from wking_device.ble import discover  # noqa: PLC0415

                found = await discover(2.0, backend=world.backend, count=1)
                assert await keeper.keep({sim.address}, found) == {sim.address}
                await keeper.settled(10)  # the first connection is set up (or failed)
                assert keeper.last_error(sim.address) is None
                assert keeper.connected() == {sim.address}
                assert keeper.adapter(sim.address) == "hci0"

                await world.unplug_adapter("hci0")
                await _until(
                    lambda: (
                        keeper.adapter(sim.address) == "hci1"
                        and keeper.connected() == {sim.address}
                        and keeper.reconnects == 1
                    )
                )
                assert world.connected_on("hci1") == [sim.address]
        failover = [r.getMessage() for r in caplog.records if "was hci0" in r.getMessage()]
        assert failover, "the failover was not logged"
        assert "hci1" in failover[0]
        for record in caplog.records:
            assert not MAC_RE.search(record.getMessage()), record.getMessage()


async def test_read_all_through_several_adapters(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    adapters = [AdapterSpec("hci0", connection_slots=1), AdapterSpec("hci1", connection_slots=1)]
    async with SimWorld.fleet(4, adv_interval_ms=20, adapters=adapters) as world:
        result = await read_all(
            [s.address for s in world.speakers],
            backend=world.backend,
            settings=fast_settings,
            retry=fast_retry,
            adapters=["hci0", "hci1"],
        )
        assert result.ok, result.errors
        assert len(result.infos) == 4
        assert 1 <= result.peak_connections <= 2  # one slot on each adapter


async def test_configured_adapters_are_used_by_every_session(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    # `[ble] adapters = [...]` in config.toml reaches Speaker, SessionKeeper and read_all
    settings = fast_settings.replace(adapters=("hci0", "hci1"))
    async with SimWorld.fleet(2, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        one, two = world.speakers
        for speaker in world.speakers:
            speaker.set_rssi(-80, adapter="hci0")
            speaker.set_rssi(-45, adapter="hci1")
        async with Speaker(
            one.address, backend=world.backend, settings=settings, retry=fast_retry
        ) as session:
            assert session.adapter == "hci1"  # picked among the configured ones
        async with SessionKeeper(
            backend=world.backend, settings=settings, backoff=FAST_BACKOFF, retry=fast_retry
        ) as keeper:
            from wking_device.ble import discover  # noqa: PLC0415

            found = await discover(2.0, backend=world.backend, count=2)
            assert await keeper.keep({two.address}, found) == {two.address}
            await keeper.settled(10)
            assert keeper.adapter(two.address) == "hci1"
            await world.unplug_adapter("hci1")
            await _until(lambda: keeper.adapter(two.address) == "hci0" and keeper.connected())
        result = await read_all(
            [one.address, two.address],
            backend=world.backend,
            settings=settings,
            retry=fast_retry,
        )
        assert result.ok, result.errors
        assert world.connected_on("hci1") is None  # unplugged: both were read through hci0


def test_a_malformed_object_manager_answer_counts_only_what_it_can_read() -> None:
    # BlueZ's answer is trusted for its shape only: wrong types are skipped, never raised on.
    device = "org.bluez.Device1"
    objects = {
        "/org/bluez/hci0": {"org.bluez.Adapter1": {}},
        "/org/bluez/hci0/dev_1": {device: {"Address": 42, "Connected": True}},
        "/org/bluez/hci0/dev_2": {device: {"Address": "C0:57:4B:00:00:02", "Adapter": 7}},
        "/org/bluez/hci0/dev_3": {device: {"Connected": True}},
        "/org/bluez/hci0/dev_4": {device: {"Address": "C0:57:4B:00:00:04", "Connected": 1}},
    }
    assert bluez_connected_by_adapter(objects) == {"hci0": frozenset({"C0:57:4B:00:00:04"})}


def test_an_adapter_name_that_is_not_plain_is_refused() -> None:
    for name in ("", "../hci0", "hci0/dev_C0"):
        with pytest.raises(UsageError):
            SimWorld(adapters=[name])
    with pytest.raises(UsageError):
        SimWorld(adapters=["hci0", "hci0"])
    with pytest.raises(UsageError):
        SimWorld(adapters=[])
    with pytest.raises(UsageError):
        SimWorld(adapters=[AdapterSpec("hci0", connection_slots=0)])
    with pytest.raises(UsageError, match="not an address"):
        SimWorld(adapters=[AdapterSpec("hci0", address="hci0")])
    with pytest.raises(UsageError, match="same address"):
        SimWorld(
            adapters=[
                AdapterSpec("hci0", "F0:00:00:00:00:01"),
                AdapterSpec("hci1", "F0:00:00:00:00:01"),
            ]
        )


async def test_a_session_on_an_adapter_that_is_gone_fails_instead_of_waiting_for_a_slot(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    # The stack reports no such adapter: the slot view knows nothing, so the connect goes ahead
    # and fails with the stack's own error (it must not wait for a slot that never comes).
    async with SimWorld.fleet(1, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        await world.unplug_adapter("hci1")
        session = Speaker(
            world.speakers[0].address,
            backend=world.backend,
            settings=fast_settings,
            retry=fast_retry,
            adapter="hci1",
        )
        async with asyncio.timeout(10):
            with pytest.raises(BluetoothError, match="adapter 'hci1' not found"):
                await session.connect()
        assert not session.is_connected


def test_the_adapter_of_a_device_comes_from_its_bluez_path_or_simulator_details() -> None:
    from bleak.backends.device import BLEDevice  # noqa: PLC0415

    from wking_device.ble._adapters import device_adapter  # noqa: PLC0415

    address = "C0:57:4B:00:00:01"
    bluez = BLEDevice(address, None, {"path": "/org/bluez/hci1/dev_C0_57_4B_00_00_01"})
    assert device_adapter(bluez) == "hci1"
    assert device_adapter(BLEDevice(address, None, {"path": "/somewhere/else"})) is None
    assert device_adapter(BLEDevice(address, None, None)) is None  # macOS, Windows: unknown


async def test_a_system_bus_that_never_answers_leaves_the_slots_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # BlueZ's D-Bus cannot exist here: its call is replaced by one that never returns
    from wking_device.ble import _adapters  # noqa: PLC0415

    async def never() -> dict[str, object]:
        await asyncio.Event().wait()
        raise AssertionError  # pragma: no cover

    monkeypatch.setattr(_adapters, "_bluez_managed_objects", never)
    monkeypatch.setattr(_adapters, "_BLUEZ_ASK_S", 0.05)
    monkeypatch.setattr(_adapters, "_bluez_unavailable_until", 0.0)
    monkeypatch.setattr(_adapters.sys, "platform", "linux")
    async with asyncio.timeout(5):
        assert await _adapters._bluez_slots("hci0") is None
    assert _adapters._bluez_unavailable_until > time.monotonic()  # not asked again for a while


async def test_discovery_scans_every_adapter_given(caplog: pytest.LogCaptureFixture) -> None:
    # `[ble] adapters`: a speaker only the second adapter hears is found too, at its best RSSI
    from wking_device.ble import discover  # noqa: PLC0415

    async with SimWorld.fleet(3, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        near0, near1, both = world.speakers
        near0.set_rssi(None, adapter="hci1")
        near1.set_rssi(None, adapter="hci0")
        both.set_rssi(-85, adapter="hci0")
        both.set_rssi(-42, adapter="hci1")
        one = await discover(1.0, backend=world.backend, adapter="hci0", count=3)
        assert {s.address for s in one} == {near0.address, both.address}
        # the whole scan, not count=3: a count ends it at the third speaker, possibly before
        # hci1 heard `both` (then -85 is its best sighting so far, as documented)
        every = await discover(1.0, backend=world.backend, adapters=["hci0", "hci1", "hci0"])
        assert {s.address for s in every} == {near0.address, near1.address, both.address}
        best = next(s for s in every if s.address == both.address)
        assert best.rssi == -42  # the sighting a connection through hci1 would use
        assert [s.rssi for s in every] == sorted((s.rssi for s in every), reverse=True)
        # an adapter that is gone is passed over (one warning), while another still scans
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            partial = await discover(5.0, backend=world.backend, adapters=["hci7", "hci1"], count=2)
        assert {s.address for s in partial} == {near1.address, both.address}
        assert [r.getMessage() for r in caplog.records if "hci7" in r.getMessage()]
        from wking_device.errors import AdapterUnavailable  # noqa: PLC0415

        with pytest.raises(AdapterUnavailable):
            await discover(0.5, backend=world.backend, adapters=["hci7", "hci8"])
    with pytest.raises(UsageError):
        await discover(0.1, adapters=[])
    with pytest.raises(UsageError):
        await discover(0.1, adapter="hci0", adapters=["hci0", "hci1"])


# --- streaming scans on several adapters ----------------------------------------------------------


async def test_a_streaming_scan_listens_on_every_adapter_given(recorder: Recorder) -> None:
    # A speaker only hci1 hears is streamed; one both hear keeps one consistent sighting: the
    # stronger adapter's, its device that adapter's, until that adapter stops hearing it.
    async with SimWorld.fleet(3, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        near0, near1, both = world.speakers
        near0.set_rssi(None, adapter="hci1")
        near1.set_rssi(None, adapter="hci0")
        both.set_rssi(-85, adapter="hci0")
        both.set_rssi(-42, adapter="hci1")
        kept: list[tuple[int, str | None]] = []

        def on_advertisement(speaker: DiscoveredSpeaker) -> None:
            if speaker.address == both.address:
                kept.append((speaker.rssi, device_adapter(speaker.device)))

        scanner = SpeakerScanner(
            backend=world.backend,
            events=recorder.bus,
            adapters=["hci0", "hci1", "hci0"],  # a name given twice scans once
            on_advertisement=on_advertisement,
            stale_after=1.0,
        )
        streamed: dict[str, DiscoveredSpeaker] = {}
        async with scanner:
            async with asyncio.timeout(10):
                async for speaker in scanner:
                    streamed[speaker.address] = speaker
                    if len(streamed) == 3:
                        break
            assert device_adapter(streamed[near1.address].device) == "hci1"
            assert device_adapter(streamed[near0.address].device) == "hci0"
            # the public field says the same as the device
            assert streamed[near1.address].adapter == "hci1"
            assert streamed[near0.address].adapter == "hci0"
            # heard by both: hci1 is stronger, so its sighting is kept from its first one on
            await _until(lambda: kept.count((-42, "hci1")) >= 20)
            assert set(kept) <= {(-85, "hci0"), (-42, "hci1")}  # RSSI and device go together
            switched = kept.index((-42, "hci1"))
            assert set(kept[switched:]) == {(-42, "hci1")}  # hci0's weaker ones never win
            sighting = scanner.speakers[both.address.upper()]
            assert (sighting.rssi, device_adapter(sighting.device)) == (-42, "hci1")
            # hci1 stops hearing it: once its sighting is stale, hci0's weaker one is kept
            both.set_rssi(None, adapter="hci1")
            await _until(
                lambda: device_adapter(scanner.speakers[both.address.upper()].device) == "hci0"
            )
            assert scanner.speakers[both.address.upper()].rssi == -85
            assert scanner.speakers[both.address.upper()].adapter == "hci0"
    scans = recorder.of(OperationKind.SCAN)  # one per adapter scanned, each with its own counts
    assert sorted(e.detail["adapter"] for e in scans) == ["hci0", "hci1"]
    assert {e.outcome for e in scans} == {Outcome.OK}
    assert all(e.detail["speakers"] == 2 and e.detail["adverts"] > 0 for e in scans)


async def test_an_adapter_that_cannot_scan_is_passed_over_with_one_warning(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    hostile = ["hci7", "../hci0", "hci0\n\x1b[2J"]  # names a library caller may pass
    async with SimWorld.fleet(1, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        only1 = world.speakers[0]
        only1.set_rssi(None, adapter="hci0")
        with caplog.at_level(logging.WARNING):
            async with SpeakerScanner(
                backend=world.backend, events=recorder.bus, adapters=[*hostile, "hci1"]
            ) as scanner:
                assert await scanner.wait_for(1, 10)
        assert device_adapter(scanner.speakers[only1.address.upper()].device) == "hci1"
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 3  # one each
        for name, message in zip(hostile, warnings, strict=True):
            assert message.startswith(f"cannot scan with {name!r}: ")
            assert message.isprintable(), message  # no newline, no escape sequence
        # a name that is no adapter name never reaches the stack (no "/org/bluez/../hci0")
        assert warnings[1] == "cannot scan with '../hci0': not an adapter name"
        failed = [e for e in recorder.of(OperationKind.SCAN) if e.outcome is not Outcome.OK]
        assert [e.error for e in failed] == ["adapter_unavailable"] * 3
        # none can scan: AdapterUnavailable; one hostile name alone: the same, no warning
        with pytest.raises(AdapterUnavailable):
            await SpeakerScanner(backend=world.backend, adapters=hostile).start()
        caplog.clear()
        with pytest.raises(AdapterUnavailable, match="not an adapter name"):
            await SpeakerScanner(backend=world.backend, adapter="../hci0").start()
        assert not caplog.records
    with pytest.raises(UsageError):
        SpeakerScanner(adapters=[])
    with pytest.raises(UsageError):
        SpeakerScanner(adapter="hci0", adapters=["hci1"])


async def test_a_tracker_loses_a_speaker_only_when_no_adapter_hears_it() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        sim = world.speakers[0]
        sim.set_rssi(-40, adapter="hci0")
        sim.set_rssi(-75, adapter="hci1")
        key = sim.address.upper()
        gone: list[SpeakerUnavailable] = []
        moved: list[SpeakerChanged] = []
        async with SpeakerTracker(
            backend=world.backend,
            adapters=["hci0", "hci1"],
            min_timeout=1.0,  # the learned interval (20 ms) makes this the timeout
            max_timeout=2.0,
            check_every=0.05,
        ) as tracker:
            tracker.subscribe(
                lambda event: gone.append(event) if isinstance(event, SpeakerUnavailable) else None
            )
            tracker.subscribe(
                lambda event: (
                    moved.append(event)
                    if isinstance(event, SpeakerChanged) and "adapter" in event.changed
                    else None
                )
            )
            await _until(lambda: key in tracker.speakers)
            assert device_adapter(tracker.speakers[key].device) == "hci0"  # the stronger
            assert tracker.speakers[key].adapter == "hci0"
            sim.set_rssi(None, adapter="hci0")  # out of hci0's reach: hci1 still hears it
            await _until(lambda: device_adapter(tracker.speakers[key].device) == "hci1")
            assert tracker.speakers[key].adapter == "hci1"
            await _until(lambda: bool(moved))  # a move between adapters is a change
            assert moved[-1].speaker.adapter == "hci1"
            heard = tracker.speakers[key].adverts
            # well past the timeout, adverts heard through hci1 alone (20 ms apart, 2 s)
            await _until(lambda: tracker.speakers[key].adverts >= heard + 100)
            assert gone == []
            assert tracker.speakers[key].available
            assert tracker.speakers[key].rssi == -75
            sim.set_rssi(None, adapter="hci1")  # now no adapter hears it: lost
            await _until(lambda: len(gone) == 1)
    with pytest.raises(UsageError):
        SpeakerTracker(adapters=[])


async def test_an_adapter_that_stays_gone_is_warned_about_once_until_it_scans_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the agent scans every cycle (5 s by default): an unplugged dongle is one WARNING, not
    # 720 an hour; once it scans again, losing it again is news again
    from wking_device.ble import discover  # noqa: PLC0415

    async with SimWorld.fleet(1, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world:
        await world.unplug_adapter("hci1")
        with caplog.at_level(logging.DEBUG, logger="wking_device.ble"):
            for _ in range(3):
                assert await discover(
                    2.0, backend=world.backend, adapters=["hci0", "hci1"], count=1
                )
            warned = [r for r in caplog.records if "hci1" in r.getMessage()]
            assert [r.levelno for r in warned] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
            await world.plug_adapter("hci1")
            assert await discover(2.0, backend=world.backend, adapters=["hci0", "hci1"], count=1)
            await world.unplug_adapter("hci1")
            caplog.clear()
            assert await discover(2.0, backend=world.backend, adapters=["hci0", "hci1"], count=1)
        warned = [r for r in caplog.records if "hci1" in r.getMessage()]
        assert [r.levelno for r in warned] == [logging.WARNING]
