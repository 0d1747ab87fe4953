"""The device session against the simulator: info, control, notifications, reconnect, events."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

import pytest

from wking_device.ble import BatteryReading, Speaker, SpeakerEvent, discover
from wking_device.errors import (
    CommandRejected,
    DeviceDisconnected,
    UnsupportedOperation,
    UsageError,
)
from wking_device.models import DeviceInfo, OperationKind, Outcome
from wking_device.protocol import (
    EqPreset,
    LightMode,
    MalformedCommand,
    Opcode,
    PoweringOff,
    PowerState,
    StateChanged,
    UnsupportedCommand,
    WkingV1Profile,
)
from wking_device.sim import SimWorld, SpeakerSpec

# Speaker.subscribe (deprecated: DeprecationWarning) is exercised here on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Speaker.subscribe:DeprecationWarning")

if TYPE_CHECKING:
    from tests.ble.conftest import Recorder

    from wking_device.ble import RetryPolicy
    from wking_device.config import BleSettings


async def _wait_until(predicate: object, within: float = 2.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polls the simulator's state, which has no event
            await asyncio.sleep(0.005)


async def test_read_info_from_dis_battery_and_vendor_state(recorder: Recorder) -> None:
    async with SimWorld.fleet(2, adv_interval_ms=20) as world:
        found = await discover(2.0, backend=world.backend, count=2)
        target = next(s for s in found if s.address == world.speakers[1].address)
        sim = world.speakers[1]
        async with Speaker(target, backend=world.backend, events=recorder.bus) as speaker:
            info = await speaker.read_info()
            serial = await speaker.read_serial_number()
        assert isinstance(info, DeviceInfo)
        assert info.address == sim.address
        assert info.name == sim.name
        assert info.manufacturer == "W-KING"
        assert info.model == sim.spec.model_id
        assert info.model_number == sim.spec.model_number
        assert info.firmware == sim.spec.firmware
        assert info.hardware == sim.spec.hardware
        assert info.battery == sim.state.battery_level
        assert info.rssi == target.rssi
        assert info.volume == sim.state.volume
        assert info.eq == sim.state.eq.name.lower()
        assert info.light == sim.state.light.name.lower()
        assert serial == sim.spec.serial
    kinds = [e.kind for e in recorder.events]
    assert kinds[0] is OperationKind.CONNECT
    assert OperationKind.SERVICES in kinds
    assert OperationKind.INFO in kinds
    assert kinds[-1] is OperationKind.DISCONNECT
    assert all(e.outcome is Outcome.OK for e in recorder.events)
    assert all(e.address == sim.address for e in recorder.events)
    reads = {e.detail["char"] for e in recorder.of(OperationKind.READ)}
    assert "00002a29-0000-1000-8000-00805f9b34fb" in reads
    (command,) = recorder.of(OperationKind.COMMAND)
    assert command.detail["command"] == "GET_STATE"


async def test_each_control_command_changes_the_simulated_speaker(recorder: Recorder) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        events: list[SpeakerEvent] = []
        # connect by address: the session finds a fresh BLEDevice itself
        async with Speaker(sim.address, backend=world.backend, events=recorder.bus) as speaker:
            speaker.subscribe(events.append)
            await speaker.set_volume(73)
            assert sim.state.volume == 73
            await speaker.set_eq("bass-boost")
            assert sim.state.eq is EqPreset.BASS_BOOST
            await speaker.set_eq(EqPreset.JAZZ)
            assert sim.state.eq is EqPreset.JAZZ
            await speaker.set_light(LightMode.RAINBOW)
            assert sim.state.light is LightMode.RAINBOW
            rtt = await speaker.ping(b"hello")
            assert 0 < rtt < 1
            state = await speaker.get_state()
            assert (state.volume, state.eq, state.light) == (73, EqPreset.JAZZ, LightMode.RAINBOW)
            info = await speaker.get_info()
            assert info.serial_number == sim.spec.serial
            await _wait_until(lambda: len(events) >= 4)
            assert isinstance(events[-1], StateChanged)
            assert events[-1].light is LightMode.RAINBOW
            with pytest.raises(UsageError):
                await speaker.set_volume(101)
            with pytest.raises(UsageError):
                await speaker.set_eq("loudness-war")
            await speaker.power_off()
            await _wait_until(lambda: any(isinstance(e, PoweringOff) for e in events))
            await _wait_until(lambda: not speaker.is_connected)
            assert sim.state.power is not PowerState.ON
            with pytest.raises(DeviceDisconnected):
                await speaker.get_state()
    commands = [e.detail["command"] for e in recorder.of(OperationKind.COMMAND)]
    assert commands[:7] == [
        "SET_VOLUME",
        "SET_EQ",
        "SET_EQ",
        "SET_LIGHT",
        "PING",
        "GET_STATE",
        "GET_INFO",
    ]
    seqs = [e.detail["seq"] for e in recorder.of(OperationKind.COMMAND)]
    assert seqs == sorted(seqs)
    assert recorder.of(OperationKind.DISCONNECT)[0].outcome is Outcome.ERROR  # link dropped


async def test_error_statuses_become_typed_errors_and_the_session_continues() -> None:
    spec = SpeakerSpec.for_index(1, adv_interval_ms=20)
    async with (
        SimWorld([spec]) as world,
        Speaker(world.speakers[0].address, backend=world.backend) as speaker,
    ):
        with pytest.raises(CommandRejected) as rejected:
            await speaker.command(
                lambda seq: MalformedCommand(seq=seq, opcode=Opcode.SET_VOLUME, payload=b"")
            )
        assert rejected.value.status == 0x01  # BAD_PARAM
        assert rejected.value.remedy
        with pytest.raises(UnsupportedOperation):
            await speaker.command(lambda seq: UnsupportedCommand(seq=seq, opcode=0x7E))
        await speaker.set_volume(5)
        assert world.speakers[0].state.volume == 5


async def test_battery_notifications_reach_subscribers() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        got: list[SpeakerEvent] = []
        async with Speaker(sim.address, backend=world.backend) as speaker:
            unsubscribe = speaker.subscribe(got.append)
            speaker.subscribe(lambda _e: 1 / 0)  # a failing subscriber is skipped
            await sim.set_battery(42)
            await _wait_until(lambda: BatteryReading(42) in got)
            assert await speaker.read_battery() == 42
            unsubscribe()
            before = len(got)
            await sim.set_battery(41)
            await asyncio.sleep(0.05)
            assert len(got) == before


async def test_reconnect_restores_subscriptions(
    recorder: Recorder, fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        got: list[SpeakerEvent] = []
        raw: list[bytes] = []
        async with Speaker(
            sim.address,
            backend=world.backend,
            events=recorder.bus,
            settings=fast_settings,
            retry=fast_retry,
        ) as speaker:
            speaker.subscribe(got.append)
            await speaker.start_notify("00002a19-0000-1000-8000-00805f9b34fb", raw.append)
            # the link drops (out of range), then the speaker comes back
            sim.faults.in_range = False
            await _wait_until(lambda: not speaker.is_connected)
            with pytest.raises(DeviceDisconnected):
                await speaker.set_volume(10)
            sim.faults.in_range = True
            await speaker.reconnect()
            assert speaker.connections == 2
            await sim.set_battery(33)
            await _wait_until(lambda: BatteryReading(33) in got and bytes([33]) in raw)
            await speaker.set_volume(11)
            await _wait_until(lambda: any(isinstance(e, StateChanged) for e in got))
    # one subscription per characteristic and connection: vendor + battery (shared with the
    # raw subscriber), restored after the reconnect
    chars = [e.detail["char"] for e in recorder.of(OperationKind.SUBSCRIBE)]
    assert (
        chars
        == [
            "03fe0003-46c8-4d2c-9fb7-7805cd96a1e5",
            "00002a19-0000-1000-8000-00805f9b34fb",
        ]
        * 2
    )


async def test_auto_reconnect_on_next_operation(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        async with Speaker(
            sim.address,
            backend=world.backend,
            settings=fast_settings,
            retry=fast_retry,
            auto_reconnect=True,
        ) as speaker:
            sim.faults.in_range = False
            await _wait_until(lambda: not speaker.is_connected)
            sim.faults.in_range = True
            await speaker.set_volume(64)
            assert sim.state.volume == 64
            assert speaker.connections == 2


async def test_standard_services_work_without_the_vendor_channel() -> None:
    # A profile whose vendor service this device lacks: only DIS and Battery are there for it.
    foreign = WkingV1Profile(service_uuid="0000abcd-0000-1000-8000-00805f9b34fb")
    async with (
        SimWorld.fleet(1, adv_interval_ms=20) as world,
        Speaker(world.speakers[0].address, backend=world.backend, profile=foreign) as speaker,
    ):
        assert not speaker.has_vendor_channel
        info = await speaker.read_info()
        assert info.manufacturer == "W-KING"
        assert info.battery == world.speakers[0].state.battery_level
        assert info.volume is None
        with pytest.raises(UnsupportedOperation):
            await speaker.set_volume(10)


async def test_not_connected_session_says_so() -> None:
    async with SimWorld.fleet(1) as world:
        speaker = Speaker(world.speakers[0].address, backend=world.backend)
        with pytest.raises(DeviceDisconnected) as caught:
            await speaker.read_info()
        assert "connect first" in str(caught.value)
        await speaker.disconnect()  # harmless when never connected


async def test_cancelling_the_caller_propagates(recorder: Recorder) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        sim.faults.response_delay_s = 5.0
        async with Speaker(sim.address, backend=world.backend, events=recorder.bus) as speaker:
            task = asyncio.create_task(speaker.get_state())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert speaker.is_connected
            sim.faults.response_delay_s = 0.0
            assert (await speaker.get_state()).volume == sim.state.volume
    cancelled = [e for e in recorder.of(OperationKind.COMMAND) if e.outcome is Outcome.CANCELLED]
    assert len(cancelled) == 1


async def test_cancelling_a_connect_propagates_and_frees_the_slot(
    fast_settings: BleSettings,
) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        sim.faults.connectable = False
        speaker = Speaker(sim.address, backend=world.backend, settings=fast_settings)
        task = asyncio.create_task(speaker.connect())
        await asyncio.sleep(0.2)  # the connect is under way (waiting for the speaker to connect)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert speaker.limiter is not None
        assert speaker.limiter.active == 0
        assert not speaker.is_connected


async def test_a_stale_discovery_result_is_refound_before_connecting(recorder: Recorder) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        (found,) = await discover(2.0, backend=world.backend, count=1)
        world.speakers[0].rssi = found.rssi - 9
        recorder.events.clear()
        async with Speaker(
            found, backend=world.backend, events=recorder.bus, fresh_for=0.0
        ) as speaker:
            assert speaker.rssi == found.rssi - 9  # from the fresh advertisement
        kinds = [e.kind for e in recorder.events]
        assert kinds[:2] == [OperationKind.SCAN, OperationKind.CONNECT]
        recorder.events.clear()
        async with Speaker(found, backend=world.backend, events=recorder.bus):
            pass
        assert recorder.events[0].kind is OperationKind.CONNECT  # fresh enough: no rescan


async def test_a_discovery_result_seen_long_ago_is_refound_before_connecting(
    recorder: Recorder,
) -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        (found,) = await discover(2.0, backend=world.backend, count=1)
        # the same result, as a caller holding it for a minute would have it
        old = dataclasses.replace(found, seen_at=found.seen_at - 60.0)
        recorder.events.clear()
        async with Speaker(old, backend=world.backend, events=recorder.bus, fresh_for=30.0):
            pass
        kinds = [e.kind for e in recorder.events]
        assert kinds[:2] == [OperationKind.SCAN, OperationKind.CONNECT]


async def test_a_raw_subscription_spelled_differently_shares_the_session_subscription() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        got: list[SpeakerEvent] = []
        raw: list[bytes] = []
        async with Speaker(sim.address, backend=world.backend) as speaker:
            speaker.subscribe(got.append)
            # the 16-bit short form, upper case: the same characteristic as 0x2A19
            await speaker.start_notify("2A19", raw.append)
            await sim.set_battery(37)
            await _wait_until(lambda: bytes([37]) in raw)
            await _wait_until(lambda: BatteryReading(37) in got)  # still decoded for subscribers
            assert await speaker.read("2A19") == bytes([37])
            await speaker.stop_notify("00002A19-0000-1000-8000-00805F9B34FB")
            await sim.set_battery(36)
            await _wait_until(lambda: BatteryReading(36) in got)
            assert bytes([36]) not in raw
            with pytest.raises(UsageError):
                await speaker.start_notify("battery", raw.append)


async def test_disconnect_while_another_task_connects_leaves_the_session_disconnected() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=100) as world:
        sim = world.speakers[0]
        speaker = Speaker(sim.address, backend=world.backend)
        connecting = asyncio.create_task(speaker.connect())
        await _wait_until(lambda: speaker.limiter is not None and speaker.limiter.active == 1)
        await speaker.disconnect()  # e.g. a shutdown path, while the connect is under way
        await connecting
        assert not speaker.is_connected
        assert not sim.connected
        assert speaker.limiter is not None
        assert speaker.limiter.active == 0
