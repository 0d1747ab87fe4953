"""The event bus, the error translation table and the retry policy."""

from __future__ import annotations

import asyncio
import logging

import pytest
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakCharacteristicNotFoundError,
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
)

from wking_device.ble import EventBus, RetryPolicy, Speaker, get_event_bus
from wking_device.ble._translate import is_transient, translate
from wking_device.errors import (
    AdapterUnavailable,
    BluetoothError,
    BluetoothReason,
    ConnectionFailed,
    DeviceDisconnected,
    DeviceNotFound,
    GattError,
    OperationTimeout,
    UnsupportedOperation,
    UsageError,
)
from wking_device.models import OperationEvent, OperationKind, Outcome
from wking_device.sim import SimWorld

ADDRESS = "C0:57:4B:00:00:01"


def _event() -> OperationEvent:
    return OperationEvent(kind=OperationKind.SCAN, outcome=Outcome.OK)


def test_bus_delivers_to_subscribers_until_they_unsubscribe() -> None:
    bus = EventBus()
    first: list[OperationEvent] = []
    second: list[OperationEvent] = []
    unsubscribe = bus.subscribe(first.append)
    bus.subscribe(second.append)
    bus.emit(_event())
    unsubscribe()
    unsubscribe()  # twice is harmless
    bus.emit(_event())
    assert (len(first), len(second)) == (1, 2)
    assert bus.subscriber_count == 1
    assert bus.emitted == 2


def test_a_raising_subscriber_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    got: list[OperationEvent] = []

    def broken(_event: OperationEvent) -> None:
        raise RuntimeError("collector bug")

    bus.subscribe(broken)
    bus.subscribe(got.append)
    with caplog.at_level(logging.ERROR, logger="wking_device.ble._events"):
        bus.emit(_event())
    assert len(got) == 1
    assert bus.subscriber_errors == 1
    assert "collector bug" in caplog.text


def test_a_subscriber_may_unsubscribe_itself_while_called() -> None:
    bus = EventBus()
    calls: list[int] = []
    handle = None

    def once(_event: OperationEvent) -> None:
        calls.append(1)
        assert handle is not None
        handle()

    handle = bus.subscribe(once)
    bus.emit(_event())
    bus.emit(_event())
    assert calls == [1]


def test_default_bus_is_process_wide() -> None:
    assert get_event_bus() is get_event_bus()


async def test_ble_operations_survive_a_raising_subscriber() -> None:
    bus = EventBus()
    bus.subscribe(lambda _e: 1 / 0)
    async with (
        SimWorld.fleet(1, adv_interval_ms=20) as world,
        Speaker(world.speakers[0].address, backend=world.backend, events=bus) as speaker,
    ):
        await speaker.set_volume(3)
        assert world.speakers[0].state.volume == 3
    assert bus.subscriber_errors == bus.emitted > 3


async def test_default_bus_receives_events_without_injection() -> None:
    got: list[OperationEvent] = []
    unsubscribe = get_event_bus().subscribe(got.append)
    try:
        async with (
            SimWorld.fleet(1) as world,
            Speaker(world.speakers[0].address, backend=world.backend),
        ):
            pass
    finally:
        unsubscribe()
    assert {e.kind for e in got} >= {OperationKind.SCAN, OperationKind.CONNECT}


@pytest.mark.parametrize(
    ("exc", "expected", "reason"),
    [
        (TimeoutError(), OperationTimeout, BluetoothReason.TIMEOUT),
        (
            BleakBluetoothNotAvailableError("off", BleakBluetoothNotAvailableReason.POWERED_OFF),
            AdapterUnavailable,
            BluetoothReason.ADAPTER_UNAVAILABLE,
        ),
        (BleakDeviceNotFoundError(ADDRESS), DeviceNotFound, BluetoothReason.NOT_FOUND),
        (
            BleakCharacteristicNotFoundError("2a19"),
            UnsupportedOperation,
            BluetoothReason.UNSUPPORTED,
        ),
        (BleakGATTProtocolError(0x0E), GattError, BluetoothReason.GATT_ERROR),
        (
            BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort-by-local"]),
            ConnectionFailed,
            BluetoothReason.CONNECTION_ABORTED,
        ),
        (
            BleakDBusError("org.bluez.Error.InProgress", ["Operation already in progress"]),
            ConnectionFailed,
            BluetoothReason.CONNECTION_FAILED,
        ),
        (
            BleakError("ESP_GATT_CONN_FAIL_ESTABLISH no available connection slot"),
            ConnectionFailed,
            BluetoothReason.TOO_MANY_CONNECTIONS,
        ),
        (
            BleakDBusError("org.bluez.Error.NotConnected", ["Not Connected"]),
            DeviceDisconnected,
            BluetoothReason.DISCONNECTED,
        ),
        (
            BleakDBusError("org.bluez.Error.Failed", ["Operation failed with ATT error: 0x0e"]),
            GattError,
            BluetoothReason.GATT_ERROR,
        ),
        (asyncio.CancelledError(), DeviceDisconnected, BluetoothReason.DISCONNECTED),
        (EOFError(), DeviceDisconnected, BluetoothReason.DISCONNECTED),
        (FileNotFoundError("/run/dbus/system_bus_socket"), AdapterUnavailable, None),
        (BleakError("something odd"), GattError, BluetoothReason.GATT_ERROR),
    ],
)
def test_translation_table(
    exc: BaseException, expected: type[BluetoothError], reason: BluetoothReason | None
) -> None:
    error = translate(exc, address=ADDRESS, operation="op")
    assert type(error) is expected
    assert error.address == ADDRESS
    if reason is not None:
        assert error.reason is reason
    assert error.message.startswith(f"op {ADDRESS}")


def test_unknown_bleak_error_while_connecting_is_a_connection_failure() -> None:
    error = translate(BleakError("odd"), address=None, operation="connect", connecting=True)
    assert isinstance(error, ConnectionFailed)


def test_gatt_error_keeps_the_att_code() -> None:
    error = translate(BleakGATTProtocolError(0x0E), address=ADDRESS, operation="read")
    assert isinstance(error, GattError)
    assert error.att_code == 0x0E


def test_transient_classification() -> None:
    assert is_transient(TimeoutError())
    assert is_transient(BleakError("le-connection-abort-by-local"))
    assert is_transient(ConnectionFailed("x", reason=BluetoothReason.CONNECTION_ABORTED))
    assert not is_transient(AdapterUnavailable("no adapter"))
    assert not is_transient(
        BleakBluetoothNotAvailableError("off", BleakBluetoothNotAvailableReason.POWERED_OFF)
    )
    assert not is_transient(ValueError("a bug"))


def test_retry_policy_backs_off_exponentially_up_to_a_cap() -> None:
    policy = RetryPolicy(attempts=6, base_delay=0.25, max_delay=1.0, jitter=0.0)
    assert [policy.delay(k) for k in range(1, 6)] == [0.25, 0.5, 1.0, 1.0, 1.0]
    slots = ConnectionFailed("x", reason=BluetoothReason.TOO_MANY_CONNECTIONS)
    assert policy.delay(1, slots) == policy.out_of_slots_delay
    jittered = RetryPolicy(base_delay=1.0, jitter=0.5)
    assert all(1.0 <= jittered.delay(1) <= 1.5 for _ in range(50))
    with pytest.raises(UsageError, match="attempts"):
        RetryPolicy(attempts=0)
