"""GATT UUIDs of the ``wking-v1`` profile and of the standard services every speaker exposes.

This module owns UUID constants only, as full 128-bit lowercase strings (the form bleak reports
and compares). It does not know how services are discovered or read; that is the BLE layer's job.

The vendor UUIDs are this project's own choice: the real W-KING GATT layout is unpublished
(see docs/protocol.md).
"""

from __future__ import annotations

__all__ = [
    "BATTERY_LEVEL_UUID",
    "BATTERY_SERVICE_UUID",
    "DEVICE_INFORMATION_SERVICE_UUID",
    "FIRMWARE_REVISION_UUID",
    "HARDWARE_REVISION_UUID",
    "MANUFACTURER_NAME_UUID",
    "MODEL_NUMBER_UUID",
    "SERIAL_NUMBER_UUID",
    "WKING_COMMAND_CHAR_UUID",
    "WKING_NOTIFY_CHAR_UUID",
    "WKING_SERVICE_UUID",
    "uuid16",
]

_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def uuid16(short: int) -> str:
    """Expand a 16-bit SIG-assigned UUID to the 128-bit lowercase form bleak uses.

    Args:
        short: The 16-bit UUID, e.g. ``0x180A``.

    Returns:
        The full UUID string, e.g. ``"0000180a-0000-1000-8000-00805f9b34fb"``.
    """
    return f"0000{short & 0xFFFF:04x}{_BASE_SUFFIX}"


#: The vendor service carrying the ``wking-v1`` command channel.
WKING_SERVICE_UUID = "03fe0001-46c8-4d2c-9fb7-7805cd96a1e5"
#: Central -> speaker: write / write-without-response of command frame fragments.
WKING_COMMAND_CHAR_UUID = "03fe0002-46c8-4d2c-9fb7-7805cd96a1e5"
#: Speaker -> central: notifications of response and event frame fragments.
WKING_NOTIFY_CHAR_UUID = "03fe0003-46c8-4d2c-9fb7-7805cd96a1e5"

#: Device Information service (0x180A) and its characteristics.
DEVICE_INFORMATION_SERVICE_UUID = uuid16(0x180A)
MANUFACTURER_NAME_UUID = uuid16(0x2A29)
MODEL_NUMBER_UUID = uuid16(0x2A24)
SERIAL_NUMBER_UUID = uuid16(0x2A25)
FIRMWARE_REVISION_UUID = uuid16(0x2A26)
HARDWARE_REVISION_UUID = uuid16(0x2A27)

#: Battery service (0x180F) and its level characteristic (one byte, 0-100 %).
BATTERY_SERVICE_UUID = uuid16(0x180F)
BATTERY_LEVEL_UUID = uuid16(0x2A19)
