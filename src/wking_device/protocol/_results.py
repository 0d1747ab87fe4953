"""The typed results a speaker returns in an OK response, and their encoding.

This module owns :class:`InfoResult`, :class:`StateResult` and :class:`PingResult` (validated on
construction; a bad value raises :class:`~wking_device.errors.UsageError`), how each becomes a
response body and back (a malformed body raises :class:`~wking_device.errors.FrameError`), and
:data:`RESULT_TYPES`, which result each opcode's OK response carries. It does not frame a
response (``_frames``) or turn frames into bytes (``_wire``). It does no I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

from wking_device.errors import FrameError, UsageError
from wking_device.protocol._fields import (
    _as_frame_error,
    _check_int,
    _check_text,
    _coerce_bytes,
    _coerce_enum,
    _decode_text,
    _encode_text,
    _expect_len,
)
from wking_device.protocol._vocabulary import (
    MAX_PING_DATA,
    EqPreset,
    LightMode,
    Opcode,
    PowerState,
)

__all__ = [
    "RESULT_TYPES",
    "InfoResult",
    "PingResult",
    "Result",
    "StateResult",
]

# --- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class InfoResult:
    """What :class:`GetInfo` returns.

    Attributes:
        model_code: The model code (see :data:`wking_device.protocol.MODELS`).
        firmware_version: Firmware version text, e.g. ``"2.4.1"``.
        hardware_version: Hardware revision text, e.g. ``"B"``.
        serial_number: Serial number text.
    """

    model_code: int
    firmware_version: str
    hardware_version: str
    serial_number: str

    def __post_init__(self) -> None:
        _check_int("model_code", self.model_code, 0, 0xFF)
        _check_text("firmware_version", self.firmware_version)
        _check_text("hardware_version", self.hardware_version)
        _check_text("serial_number", self.serial_number)

    def to_bytes(self) -> bytes:
        """Encode as a response body (after the status byte)."""
        return (
            bytes((self.model_code,))
            + _encode_text(self.firmware_version)
            + _encode_text(self.hardware_version)
            + _encode_text(self.serial_number)
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> InfoResult:
        """Decode a response body.

        Raises:
            FrameError: The body is malformed.
        """
        with _as_frame_error("info result"):
            return cls._from_bytes(body)

    @classmethod
    def _from_bytes(cls, body: bytes) -> InfoResult:
        if not body:
            raise FrameError("info result is empty")
        firmware, offset = _decode_text(body, 1, "firmware_version")
        hardware, offset = _decode_text(body, offset, "hardware_version")
        serial, offset = _decode_text(body, offset, "serial_number")
        if offset != len(body):
            raise FrameError(f"info result has {len(body) - offset} trailing bytes")
        return cls(
            model_code=body[0],
            firmware_version=firmware,
            hardware_version=hardware,
            serial_number=serial,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StateResult:
    """What :class:`GetState` returns.

    Attributes:
        volume: 0-100.
        eq: The EQ preset.
        light: The light mode.
        power: The power state.
        battery: Battery level 0-100 %.
        charging: Whether the speaker is on external power and charging.
    """

    volume: int
    eq: EqPreset
    light: LightMode
    power: PowerState
    battery: int
    charging: bool

    _STRUCT: ClassVar[struct.Struct] = struct.Struct("<BBBBBB")

    def __post_init__(self) -> None:
        _check_int("volume", self.volume, 0, 100)
        _coerce_enum(self, "eq", EqPreset)
        _coerce_enum(self, "light", LightMode)
        _coerce_enum(self, "power", PowerState)
        _check_int("battery", self.battery, 0, 100)
        if not isinstance(self.charging, bool):
            raise UsageError(f"charging must be a bool, got {self.charging!r}")

    def to_bytes(self) -> bytes:
        """Encode as a response body (after the status byte)."""
        return self._STRUCT.pack(
            self.volume, self.eq, self.light, self.power, self.battery, int(self.charging)
        )

    @classmethod
    def from_bytes(cls, body: bytes) -> StateResult:
        """Decode a response body.

        Raises:
            FrameError: The body is malformed.
        """
        with _as_frame_error("state result"):
            return cls._from_bytes(body)

    @classmethod
    def _from_bytes(cls, body: bytes) -> StateResult:
        _expect_len(body, cls._STRUCT.size, "state result")
        volume, eq, light, power, battery, charging = cls._STRUCT.unpack(body)
        if charging > 1:
            raise FrameError(f"state result: charging flag must be 0 or 1, got {charging}")
        return cls(
            volume=volume,
            eq=EqPreset(eq),
            light=LightMode(light),
            power=PowerState(power),
            battery=battery,
            charging=bool(charging),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PingResult:
    """What :class:`Ping` returns: the same bytes.

    Attributes:
        data: The echoed bytes.
    """

    data: bytes = b""

    def __post_init__(self) -> None:
        _coerce_bytes(self, "data", MAX_PING_DATA)

    def to_bytes(self) -> bytes:
        """Encode as a response body (after the status byte)."""
        return self.data

    @classmethod
    def from_bytes(cls, body: bytes) -> PingResult:
        """Decode a response body.

        Raises:
            FrameError: The body is longer than :data:`MAX_PING_DATA`.
        """
        with _as_frame_error("ping result"):
            return cls(data=body)


Result: TypeAlias = InfoResult | StateResult | PingResult

#: Which result type an OK response to each opcode carries; absent means an empty body.
RESULT_TYPES: Final[dict[int, type[Result]]] = {
    Opcode.GET_INFO: InfoResult,
    Opcode.GET_STATE: StateResult,
    Opcode.PING: PingResult,
}
