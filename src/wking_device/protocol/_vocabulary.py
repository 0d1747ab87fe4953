"""The numbers and names of the ``wking-v1`` protocol: sizes, limits and enumerations.

This module owns the protocol's constants (start byte, version, header and payload sizes, text
and ping limits) and the enumerations its frames carry (frame types, opcodes, event codes,
statuses, EQ presets, light modes, power states, buttons, power-off reasons). It does not
validate, build, encode or decode frames: that is ``_fields``, ``_results``, ``_frames`` and
``_wire``. It does no I/O.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "FRAME_OVERHEAD",
    "HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "MAX_PAYLOAD",
    "MAX_PING_DATA",
    "MAX_TEXT_BYTES",
    "PROTOCOL_VERSION",
    "START_BYTE",
    "Button",
    "ButtonAction",
    "EqPreset",
    "EventCode",
    "FrameType",
    "LightMode",
    "Opcode",
    "PowerOffReason",
    "PowerState",
    "Status",
]

START_BYTE: Final = 0xA5
PROTOCOL_VERSION: Final = 1
HEADER_SIZE: Final = 6
_CRC_SIZE: Final = 2
FRAME_OVERHEAD: Final = HEADER_SIZE + _CRC_SIZE
#: Largest payload a frame may carry; bounds the codec's memory per frame.
MAX_PAYLOAD: Final = 512
MAX_FRAME_SIZE: Final = FRAME_OVERHEAD + MAX_PAYLOAD
#: Largest UTF-8 length of a text field (firmware version, serial number, ...).
MAX_TEXT_BYTES: Final = 32
#: Largest ping payload: the echo must fit in a response next to its status byte.
MAX_PING_DATA: Final = MAX_PAYLOAD - 1


# --- enums ----------------------------------------------------------------------------------------


class FrameType(enum.IntEnum):
    """The low nibble of header byte 1."""

    COMMAND = 0x1
    RESPONSE = 0x2
    EVENT = 0x3


class Opcode(enum.IntEnum):
    """Command opcodes (0x00-0x7F); a response repeats its command's opcode."""

    GET_INFO = 0x01
    GET_STATE = 0x02
    PING = 0x03
    SET_VOLUME = 0x10
    SET_EQ = 0x11
    SET_LIGHT = 0x12
    POWER_OFF = 0x20


class EventCode(enum.IntEnum):
    """Unsolicited event codes (0x80-0xFF)."""

    STATE_CHANGED = 0x81
    BATTERY_LEVEL = 0x82
    BUTTON = 0x83
    POWERING_OFF = 0x84


class Status(enum.IntEnum):
    """First payload byte of every response."""

    OK = 0x00
    BAD_PARAM = 0x01
    BUSY = 0x02
    UNSUPPORTED = 0x03
    FAILED = 0x04
    LOW_BATTERY = 0x05


class EqPreset(enum.IntEnum):
    """Equaliser presets."""

    FLAT = 0
    BASS_BOOST = 1
    ROCK = 2
    POP = 3
    JAZZ = 4
    CLASSICAL = 5
    VOCAL = 6
    OUTDOOR = 7


class LightMode(enum.IntEnum):
    """Light-show modes."""

    OFF = 0
    STATIC = 1
    BREATHE = 2
    RAINBOW = 3
    MUSIC_SYNC = 4
    STROBE = 5


class PowerState(enum.IntEnum):
    """What the speaker's power stage is doing."""

    ON = 1
    STANDBY = 2
    SHUTTING_DOWN = 3


class Button(enum.IntEnum):
    """Physical buttons that report presses."""

    POWER = 1
    PLAY_PAUSE = 2
    VOLUME_UP = 3
    VOLUME_DOWN = 4
    LIGHT = 5
    BLUETOOTH = 6


class ButtonAction(enum.IntEnum):
    """How a button was pressed."""

    PRESS = 0
    LONG_PRESS = 1
    DOUBLE_PRESS = 2


class PowerOffReason(enum.IntEnum):
    """Why the speaker is about to power off."""

    REQUESTED = 0
    BUTTON = 1
    LOW_BATTERY = 2
    IDLE_TIMEOUT = 3
