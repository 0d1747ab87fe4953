"""Each fault of a FaultPlan produces the bleak-level error or behaviour a real stack shows."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDBusError, BleakDeviceNotFoundError, BleakError
from bleak_retry_connector import TRANSIENT_ERRORS, establish_connection
from tests._waiting import until

from wking_device.errors import ChecksumError, FrameError
from wking_device.protocol import (
    BATTERY_LEVEL_UUID,
    MANUFACTURER_NAME_UUID,
    NEED_DATA,
    WKING_COMMAND_CHAR_UUID,
    WKING_NOTIFY_CHAR_UUID,
    FrameCodec,
    Ping,
    Response,
    Role,
    SetLight,
    SetVolume,
    StateChanged,
)
from wking_device.sim import FaultPlan, SimWorld, SpeakerSpec


class _Channel:
    """The central's end of the vendor channel, for tests (the BLE layer has the real one)."""

    def __init__(self, client: BleakClient) -> None:
        self.client = client
        self.codec = FrameCodec(Role.CENTRAL, mtu=client.mtu_size)
        self.frames: asyncio.Queue = asyncio.Queue()
        self.raw: list[bytes] = []

    async def open(self) -> _Channel:
        await self.client.start_notify(WKING_NOTIFY_CHAR_UUID, self._on_notify)
        return self

    def _on_notify(self, _char: object, data: bytearray) -> None:
        self.raw.append(bytes(data))
        try:
            for frame in self.codec.receive(bytes(data)):
                self.frames.put_nowait(frame)
        except (FrameError, ChecksumError) as exc:
            self.frames.put_nowait(exc)

    async def send(self, frame_type: type, **fields: object) -> int:
        seq = self.codec.next_seq()
        for fragment in self.codec.send(frame_type(seq=seq, **fields)):
            await self.client.write_gatt_char(WKING_COMMAND_CHAR_UUID, fragment, response=True)
        return seq

    async def next(self, wait_s: float = 1.0) -> object:
        return await asyncio.wait_for(self.frames.get(), wait_s)


async def test_not_connectable_times_out_and_is_still_discovered() -> None:
    async with SimWorld.fleet(1, faults=FaultPlan(connectable=False)) as world:
        speaker = world.speakers[0]
        device = await BleakScanner.find_device_by_address(
            speaker.address, 1.0, backend=world.backend.scanner
        )
        assert device is not None
        with pytest.raises(TimeoutError):
            await BleakClient(device, timeout=0.3, backend=world.backend.client).connect()
        assert speaker.connect_attempts == 0  # nothing reached it


async def test_an_absent_speaker_does_not_block_connects_to_others() -> None:
    async with SimWorld.fleet(2) as world:
        absent, present = world.speakers
        seen = await BleakScanner.find_device_by_address(
            absent.address, 2.0, backend=world.backend.scanner
        )
        assert seen is not None
        absent.faults.in_range = False  # gone after it was seen: BlueZ still knows the device
        waiting = asyncio.create_task(
            BleakClient(seen, timeout=2.0, backend=world.backend.client).connect()
        )
        await asyncio.sleep(0.05)
        # 1 s: ample on a loaded machine, and over before the absent one gives up (2 s)
        async with BleakClient(present.address, timeout=1.0, backend=world.backend.client) as c:
            assert c.is_connected
        with pytest.raises(TimeoutError):
            await waiting


async def test_out_of_range_now_is_not_found_and_connect_by_address_is_not_found() -> None:
    # A client from an address string scans first; BlueZ: BleakDeviceNotFoundError.
    spec = SpeakerSpec.for_index(1, faults=FaultPlan(in_range=False))
    async with SimWorld([spec]) as world:
        assert await BleakScanner.discover(0.3, backend=world.backend.scanner) == []
        with pytest.raises(BleakDeviceNotFoundError):
            await BleakClient(spec.address, timeout=0.3, backend=world.backend.client).connect()


async def test_abort_on_attempt_k_raises_bluez_transient_error() -> None:
    async with SimWorld.fleet(1, faults=FaultPlan(abort_connect_attempts={1, 3})) as world:
        speaker = world.speakers[0]
        client = BleakClient(speaker.address, timeout=2, backend=world.backend.client)
        with pytest.raises(BleakDBusError) as info:
            await client.connect()
        assert "le-connection-abort-by-local" in str(info.value)
        assert any(text in str(info.value) for text in TRANSIENT_ERRORS)
        assert not client.is_connected
        await client.connect()  # attempt 2 succeeds
        await client.disconnect()
        with pytest.raises(BleakDBusError):
            await client.connect()  # attempt 3 aborted again
        assert speaker.connect_attempts == 3


async def test_abort_is_retried_by_bleak_retry_connector() -> None:
    async with SimWorld.fleet(1, faults=FaultPlan(abort_connect_attempts={1, 2})) as world:
        speaker = world.speakers[0]
        device = await BleakScanner.find_device_by_address(
            speaker.address, 1.0, backend=world.backend.scanner
        )
        assert device is not None
        client = await establish_connection(
            BleakClient, device, speaker.name, backend=world.backend.client
        )
        try:
            assert client.is_connected
            assert speaker.connect_attempts == 3
            assert (await client.read_gatt_char(MANUFACTURER_NAME_UUID)) == b"W-KING"
        finally:
            await client.disconnect()


async def test_disconnect_after_n_operations() -> None:
    async with SimWorld.fleet(1, faults=FaultPlan(disconnect_after_ops=3)) as world:
        speaker = world.speakers[0]
        lost = asyncio.Event()
        client = BleakClient(
            speaker.address, lambda _c: lost.set(), timeout=2, backend=world.backend.client
        )
        await client.connect()
        for _ in range(3):
            await client.read_gatt_char(BATTERY_LEVEL_UUID)
        with pytest.raises(BleakDBusError, match="Not connected"):
            await client.read_gatt_char(BATTERY_LEVEL_UUID)
        await asyncio.wait_for(lost.wait(), 1.0)
        assert not client.is_connected
        # the count is per connection: a new connection gets N operations again
        await client.connect()
        await client.read_gatt_char(BATTERY_LEVEL_UUID)
        await client.disconnect()


async def test_slow_responses_delay_reads_and_commands() -> None:
    async with SimWorld.fleet(1) as world:
        speaker = world.speakers[0]
        async with BleakClient(speaker.address, timeout=2, backend=world.backend.client) as client:
            channel = await _Channel(client).open()
            speaker.faults.response_delay_s = 0.2
            started = time.perf_counter()
            await client.read_gatt_char(BATTERY_LEVEL_UUID)
            assert time.perf_counter() - started >= 0.2
            started = time.perf_counter()
            await channel.send(Ping, data=b"hi")
            response = await channel.next()
            assert isinstance(response, Response)
            assert response.result.data == b"hi"
            assert time.perf_counter() - started >= 0.2


async def test_dropped_responses_and_notifications() -> None:
    async with SimWorld.fleet(1) as world:
        speaker = world.speakers[0]
        async with BleakClient(speaker.address, timeout=2, backend=world.backend.client) as client:
            channel = await _Channel(client).open()
            speaker.faults.drop_responses = 1.0
            await channel.send(SetVolume, volume=55)
            event = await channel.next()  # the state change is an event, not a response
            assert isinstance(event, StateChanged)
            with pytest.raises(TimeoutError):
                await channel.next(0.2)
            assert speaker.state.volume == 55  # the command was carried out; only the answer lost
            speaker.faults = FaultPlan(drop_notifications=1.0)
            battery: asyncio.Queue = asyncio.Queue()
            await client.start_notify(BATTERY_LEVEL_UUID, lambda _c, d: battery.put_nowait(d))
            await speaker.set_battery(12)
            await channel.send(SetVolume, volume=56)
            assert isinstance(await channel.next(), Response)
            with pytest.raises(TimeoutError):
                await channel.next(0.2)  # no StateChanged
            assert battery.empty()


@pytest.mark.parametrize(("kind", "expected"), [("bad_crc", ChecksumError), ("truncated", None)])
async def test_malformed_responses(kind: str, expected: type[Exception] | None) -> None:
    faults = FaultPlan(malformed_responses=1.0, malformed_kind=kind)  # type: ignore[arg-type]
    async with SimWorld.fleet(1, faults=faults) as world:
        speaker = world.speakers[0]
        async with BleakClient(speaker.address, timeout=2, backend=world.backend.client) as client:
            channel = await _Channel(client).open()
            await channel.send(Ping, data=b"x" * 40)
            if expected is not None:
                assert isinstance(await channel.next(), expected)
            else:
                with pytest.raises(TimeoutError):
                    await channel.next(0.2)
                assert channel.codec.next_event() is NEED_DATA  # a partial frame is buffered
                assert channel.raw  # bytes did arrive


async def test_battery_drain_notifies() -> None:
    async with SimWorld.fleet(1, tick_s=0.05) as world:
        speaker = world.speakers[0]
        async with BleakClient(speaker.address, timeout=2, backend=world.backend.client) as client:
            levels: asyncio.Queue = asyncio.Queue()
            await client.start_notify(BATTERY_LEVEL_UUID, lambda _c, d: levels.put_nowait(d[0]))
            before = speaker.state.battery_level
            speaker.faults.battery_drain_per_min = 600.0  # 10 % per second
            level = await asyncio.wait_for(levels.get(), 1.0)
            assert level < before
            assert speaker.state.battery < before


async def test_rssi_drift_moves_scan_rssi() -> None:
    async with SimWorld.fleet(1, tick_s=0.05, adv_interval_ms=20) as world:
        speaker = world.speakers[0]
        start = speaker.rssi
        speaker.faults.rssi_drift_db_per_s = -50.0
        await until(lambda: speaker.rssi <= start - 5)  # drifted in the world; now in a scan?
        found = await BleakScanner.discover(0.1, return_adv=True, backend=world.backend.scanner)
        rssi = found[speaker.address][1].rssi
        assert rssi <= start - 5
        assert rssi >= -100


async def test_faults_change_at_run_time_with_a_new_plan() -> None:
    async with SimWorld.fleet(1) as world:
        speaker = world.speakers[0]
        async with BleakClient(speaker.address, timeout=2, backend=world.backend.client) as client:
            channel = await _Channel(client).open()
            await channel.send(SetLight, mode=3)
            assert isinstance(await channel.next(), Response)
            speaker.faults = FaultPlan(in_range=False)
            await asyncio.sleep(0.05)
            assert not client.is_connected
            with pytest.raises(BleakError):
                await client.write_gatt_char(WKING_COMMAND_CHAR_UUID, b"\x00", response=True)


async def test_a_link_dropped_mid_read_logs_no_bumble_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Data in flight when the link drops is discarded, as a real controller does; stock bumble
    # logged a WARNING per packet, which every `--simulate` user and example saw (issue 7, 22).
    from wking_device.ble import Speaker  # noqa: PLC0415
    from wking_device.config import BleSettings  # noqa: PLC0415
    from wking_device.errors import WkingError  # noqa: PLC0415

    caplog.set_level(logging.DEBUG, logger="wking_device.sim")
    settings = BleSettings(connect_attempts=1, connect_timeout=1.0, command_timeout=1.0)
    plan = FaultPlan(disconnect_after_ops=2)
    for _ in range(3):
        async with SimWorld.fleet(1, instant_connect=True, faults=plan) as world:
            with pytest.raises(WkingError):
                async with Speaker(
                    world.speakers[0].address, backend=world.backend, settings=settings
                ) as speaker:
                    await speaker.read_info()
    noisy = [
        r for r in caplog.records if r.name.startswith("bumble") and r.levelno >= logging.WARNING
    ]
    assert not noisy, [r.getMessage() for r in noisy]
    assert any("which is gone, discarded" in r.getMessage() for r in caplog.records)
