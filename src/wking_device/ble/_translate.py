"""The boundary where bleak, bumble and asyncio errors become :mod:`wking_device.errors`.

This module owns the translation of foreign exceptions into typed Bluetooth errors (with address,
reason and remedy) and the classification of connection failures as transient or not, with the
backoff each deserves. It does not retry anything itself (see :mod:`._speaker`).

The classification follows bleak-retry-connector 4.7 (``TRANSIENT_ERRORS``,
``OUT_OF_SLOTS_ERRORS``, ``calculate_backoff_time`` and its advice strings): bleak gives no typed
errors for these cases, so BlueZ's and ESPHome's error *strings* are what a real stack tells us.
The simulator raises the same strings for the same faults.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import sys
from dataclasses import dataclass

from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakCharacteristicNotFoundError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
)

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

__all__ = ["RetryPolicy", "is_caller_cancelled", "is_transient", "translate"]

_LOGGER = logging.getLogger(__name__)

# bleak-retry-connector: TRANSIENT_ERRORS (BlueZ and ESPHome strings), plus BlueZ's
# org.bluez.Error.InProgress, which a second connect to the same device raises while the first
# is still pending.
_ABORT_STRINGS = (
    "le-connection-abort-by-local",
    "br-connection-canceled",
    "ESP_GATT_CONN_FAIL_ESTABLISH",
    "ESP_GATT_CONN_TERMINATE_PEER_USER",
    "ESP_GATT_CONN_TERMINATE_LOCAL_HOST",
    "ESP_GATT_CONN_TIMEOUT",
    "ESP_GATT_ERROR",
    "ESP_GATT_CONN_CONN_CANCEL",
    "Software caused connection abort",
)
_IN_PROGRESS_STRINGS = ("InProgress", "Operation already in progress")
# ESPHome proxies (bleak-esphome), as bleak-retry-connector's OUT_OF_SLOTS_ERRORS; and BlueZ's
# string for a controller's Connection Limit Exceeded.
_OUT_OF_SLOTS_STRINGS = (
    "available connection",
    "connection slot",
    "le-connection-concurrent-connection-limit",
)
_DISCONNECTED_STRINGS = ("not connected", "disconnected", "notconnected", "connection timeout")
_ATT_ERROR = re.compile(r"ATT error: 0x([0-9a-fA-F]{2})")

ABORT_REMEDY = (
    "interference or range: move the speaker closer; an external adapter on a USB extension "
    "cable often helps"
)
OUT_OF_SLOTS_REMEDY = (
    "the adapter is out of connection slots: disconnect other devices or lower ble.max_connections"
)


def is_caller_cancelled() -> bool:
    """Tell whether the current task is being cancelled by its caller.

    bumble turns a link loss during a read into ``asyncio.CancelledError`` (simulator notes,
    gap E); that one is a disconnection. A real cancellation of the caller shows up as
    ``Task.cancelling() > 0`` and must propagate.
    """
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__} {exc}"


def is_transient(exc: BaseException) -> bool:
    """Tell whether a failed connection attempt is worth retrying.

    Timeouts, aborts, "in progress", out-of-slots, a device the stack lost track of and a link
    dropped during set-up are transient. An unavailable adapter is not. Other bleak errors are
    retried too (bleak-retry-connector counts them against the same bounded attempts), since a
    real stack reports many passing conditions with free-form text.

    Args:
        exc: The foreign (or already translated) exception of one attempt.
    """
    if isinstance(exc, AdapterUnavailable | BleakBluetoothNotAvailableError):
        return False
    if isinstance(exc, BluetoothError):
        return exc.reason not in {BluetoothReason.UNSUPPORTED, BluetoothReason.ADAPTER_UNAVAILABLE}
    return isinstance(exc, BleakError | TimeoutError | EOFError | OSError | asyncio.CancelledError)


def _contains(text: str, needles: tuple[str, ...]) -> bool:
    lowered = text.lower()
    return any(needle.lower() in lowered for needle in needles)


def translate(  # noqa: PLR0911, PLR0912 - one flat table from foreign errors to ours
    exc: BaseException,
    *,
    address: str | None,
    operation: str,
    connecting: bool = False,
) -> BluetoothError:
    """Turn a foreign exception into the typed error a caller of the BLE layer sees.

    Args:
        exc: What bleak, bumble or asyncio raised.
        address: The speaker's address.
        operation: What was being done, for the message ("connect", "read battery level", ...).
        connecting: The error came from establishing a connection (unknown bleak errors then
            become :class:`ConnectionFailed` rather than :class:`GattError`).

    Returns:
        The typed error; raise it ``from exc``.
    """
    if isinstance(exc, BluetoothError):
        return exc
    text = _text(exc)
    where = f"{operation} {address}" if address else operation
    if isinstance(exc, TimeoutError):
        return OperationTimeout(f"{where}: no answer in time", address=address)
    if isinstance(exc, BleakBluetoothNotAvailableError):
        return AdapterUnavailable(f"{where}: Bluetooth is not available ({exc})", address=address)
    if isinstance(exc, BleakDeviceNotFoundError):
        return DeviceNotFound(f"{where}: the adapter does not know this device", address=address)
    if isinstance(exc, BleakCharacteristicNotFoundError):
        return UnsupportedOperation(
            f"{where}: the speaker has no such characteristic ({exc.char_specifier})",
            address=address,
            remedy="this speaker's firmware does not offer that; check 'wking info'",
        )
    if isinstance(exc, BleakGATTProtocolError):
        return GattError(f"{where}: {exc.args[-1]}", address=address, att_code=int(exc.args[0]))
    if isinstance(exc, asyncio.CancelledError | EOFError | BrokenPipeError | ConnectionError):
        # bumble cancels a pending ATT request when the link goes (gap E); dbus-fast raises
        # EOFError/BrokenPipeError when BlueZ drops the device.
        return DeviceDisconnected(f"{where}: the link was lost", address=address)
    if _contains(text, _OUT_OF_SLOTS_STRINGS):
        return ConnectionFailed(
            f"{where}: {exc}",
            address=address,
            reason=BluetoothReason.TOO_MANY_CONNECTIONS,
            remedy=OUT_OF_SLOTS_REMEDY,
        )
    if _contains(text, _ABORT_STRINGS):
        return ConnectionFailed(
            f"{where}: connection aborted ({exc})",
            address=address,
            reason=BluetoothReason.CONNECTION_ABORTED,
            remedy=ABORT_REMEDY,
        )
    if _contains(text, _IN_PROGRESS_STRINGS):
        return ConnectionFailed(
            f"{where}: another operation is in progress ({exc})", address=address
        )
    if isinstance(exc, BleakError):
        att = _ATT_ERROR.search(str(exc))
        if att is not None:
            return GattError(f"{where}: {exc}", address=address, att_code=int(att.group(1), 16))
        if _contains(text, _DISCONNECTED_STRINGS):
            return DeviceDisconnected(f"{where}: {exc}", address=address)
        if connecting:
            return ConnectionFailed(f"{where}: {exc}", address=address)
        return GattError(f"{where}: {exc}", address=address)
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError) and sys.platform == "linux":
        # bleak's BlueZ backend talks to bluetoothd over the D-Bus system bus
        return AdapterUnavailable(
            f"{where}: cannot reach BlueZ over D-Bus ({exc.strerror or exc})",
            address=address,
            remedy="start the system bus and bluetoothd (systemctl start bluetooth), "
            "or use --simulate N to run against simulated speakers",
        )
    if isinstance(exc, OSError):
        # No adapter, permission denied on the HCI socket...
        return AdapterUnavailable(f"{where}: {exc}", address=address)
    return BluetoothError(f"{where}: unexpected {type(exc).__name__}: {exc}", address=address)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter for connection attempts.

    The delays follow bleak-retry-connector's table: short for aborts and timeouts, long when the
    adapter is out of slots (it needs time to free one).

    Attributes:
        attempts: Total connection attempts (>= 1).
        base_delay: Backoff before the second attempt, in seconds; doubled for each further one.
        max_delay: Upper bound of one backoff.
        out_of_slots_delay: Backoff after an out-of-slots error.
        jitter: Fraction of random spread added to each delay (0 disables it).
    """

    attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 4.0
    out_of_slots_delay: float = 4.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise UsageError(f"attempts must be >= 1, not {self.attempts}")
        if min(self.base_delay, self.max_delay, self.out_of_slots_delay, self.jitter) < 0:
            raise UsageError("base_delay, max_delay, out_of_slots_delay and jitter must be >= 0")

    def delay(self, attempt: int, error: BluetoothError | None = None) -> float:
        """The backoff after failed attempt number ``attempt`` (1-based).

        Args:
            attempt: The attempt that just failed.
            error: Its translated error (selects the out-of-slots delay).
        """
        if error is not None and error.reason is BluetoothReason.TOO_MANY_CONNECTIONS:
            base = self.out_of_slots_delay
        else:
            base = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        if self.jitter and base:
            base += base * self.jitter * random.random()  # noqa: S311 - jitter, not crypto
        return base
