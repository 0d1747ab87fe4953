"""A speaker session's value types and the small GATT and argument helpers its roles share.

This module owns what a :class:`~wking_device.ble.Speaker` hands out or takes in as plain values
(:class:`BatteryReading`, the :data:`SpeakerEvent`, :data:`CommandFrame` and :data:`SpeakerTarget`
aliases) and the stateless helpers the session's roles share: UUID normalisation, finding a
characteristic by UUID (lowest handle first), the ATT MTU to fragment commands for, opcode names,
enum arguments and address and timeout checks. It holds no session state, does no I/O and emits
no events (see :mod:`._speaker`, :mod:`._connection`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from bleak.backends.device import BLEDevice
from bleak.uuids import normalize_uuid_str

from wking_device.ble._discovery import DiscoveredSpeaker
from wking_device.errors import UsageError
from wking_device.protocol import (
    ATT_HEADER_SIZE,
    MAX_MTU,
    MIN_MTU,
    Command,
    EqPreset,
    Event,
    LightMode,
    MalformedCommand,
    Opcode,
    UnknownEvent,
    UnsupportedCommand,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from bleak import BleakClient
    from bleak.backends.characteristic import BleakGATTCharacteristic
    from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection

__all__ = [
    "BatteryReading",
    "CommandFrame",
    "SpeakerEvent",
    "SpeakerTarget",
]


class BatteryReading:
    """A battery level notified on the standard Battery Level characteristic (0x2A19).

    Attributes:
        level: 0-100 %.
    """

    __slots__ = ("level",)

    def __init__(self, level: int) -> None:
        self.level = level

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BatteryReading) and other.level == self.level

    def __hash__(self) -> int:
        return hash(("BatteryReading", self.level))

    def __repr__(self) -> str:
        return f"BatteryReading(level={self.level})"


SpeakerEvent: TypeAlias = Event | UnknownEvent | BatteryReading
"""What notification subscribers receive: a vendor event frame or a standard battery reading."""

CommandFrame: TypeAlias = Command | MalformedCommand | UnsupportedCommand
"""Frames :meth:`Speaker.command` sends (the last two only to test a speaker's answers)."""

SpeakerTarget: TypeAlias = DiscoveredSpeaker | BLEDevice | str
"""What a :class:`Speaker` can be built from: a discovery result, a bleak device or an address."""


def _positive_seconds(name: str, value: float) -> float:
    if not 0 < value < float("inf"):
        raise UsageError(f"{name} must be a positive number of seconds: {value!r}")
    return float(value)


def _uuid(value: str) -> str:
    """``value`` as bleak writes a UUID (128-bit, lower case), so one characteristic has one key.

    Raises:
        UsageError: ``value`` is not a UUID.
    """
    try:
        return normalize_uuid_str(value)
    except (ValueError, TypeError, AttributeError) as exc:
        raise UsageError(f"not a Bluetooth UUID: {value!r}") from exc


_Attribute = TypeVar("_Attribute", "BleakGATTService", "BleakGATTCharacteristic")


def _first(attributes: Iterable[_Attribute], uuid: str) -> _Attribute | None:
    """The attribute with ``uuid`` that has the lowest handle, or ``None``.

    bleak's ``get_service``/``get_characteristic`` raise ``BleakError`` when a device has the UUID
    more than once (earbuds and some speakers carry two Battery services), which would make the
    device unusable; the first one is what a UUID-addressed operation means here.
    """
    wanted = normalize_uuid_str(uuid)
    matches = [a for a in attributes if a.uuid == wanted]
    return min(matches, key=lambda a: a.handle) if matches else None


def _first_char(services: BleakGATTServiceCollection, uuid: str) -> BleakGATTCharacteristic | None:
    """The first characteristic with ``uuid`` (see :func:`_first`)."""
    return _first(services.characteristics.values(), uuid)


def _resolve(client: BleakClient, uuid: str) -> BleakGATTCharacteristic | str:
    """The characteristic to address by handle; the UUID itself when the device has none.

    (bleak then raises ``BleakCharacteristicNotFoundError``: an ``UnsupportedOperation``.)
    """
    char = _first_char(client.services, uuid)
    return char if char is not None else uuid


def _fragment_mtu(command_char: BleakGATTCharacteristic) -> int:
    """The ATT MTU to fragment commands for: the command characteristic's write size + 3.

    Not ``BleakClient.mtu_size``: bleak's BlueZ backend answers that with 23 and a warning on
    every connection unless its private ``_acquire_mtu()`` ran. Every backend reports the
    negotiated size through the characteristic instead (BlueZ >= 5.62 from its MTU property,
    older BlueZ 20; CoreBluetooth; WinRT), which is also what bounds one write without response.
    """
    try:
        size = int(command_char.max_write_without_response_size)
    except Exception:  # noqa: BLE001 - a backend that cannot tell: the ATT default is always safe
        return MIN_MTU
    return min(max(size + ATT_HEADER_SIZE, MIN_MTU), MAX_MTU)


def _opcode_name(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"0x{opcode:02x}"


def _enum_value(kind: type[EqPreset] | type[LightMode], value: object) -> Any:
    """An enum member from a member, its value or its name (case-insensitive)."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        key = value.strip().upper().replace("-", "_").replace(" ", "_")
        if key in kind.__members__:
            return kind[key]
    if isinstance(value, int) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            return kind(value)
    names = ", ".join(m.name.lower() for m in kind)
    raise UsageError(f"{value!r} is not a {kind.__name__}; choose one of: {names}")
