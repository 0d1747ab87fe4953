"""Typed frames of the ``wking-v1`` protocol and their wire encoding.

This module owns the frame vocabulary (commands, responses with typed results, unsolicited
events), the validation each frame does on construction, and the conversion of one whole frame
to and from bytes (:func:`encode_frame`, :func:`decode_frame`). It does not buffer, fragment or
track roles: that is :class:`wking_device.protocol.FrameCodec`'s job. It does no I/O.

Wire format (all multi-byte integers little-endian, as everywhere in Bluetooth)::

    offset  size  field
    0       1     start byte 0xA5
    1       1     version (high nibble, 1) | frame type (low nibble: 1 command, 2 response, 3 event)
    2       1     sequence number 0-255 (wraps)
    3       1     opcode (commands/responses 0x00-0x7F) or event code (0x80-0xFF)
    4       2     payload length N, 0..MAX_PAYLOAD
    6       N     payload
    6+N     2     CRC-16/CCITT-FALSE over bytes 1 .. 5+N

Constructing a frame with a bad value (volume 101, an unknown EQ preset, a 40-byte serial
number) raises :class:`~wking_device.errors.UsageError`: the caller asked for something that
cannot be said in this protocol. The same problem found in bytes from the air raises
:class:`~wking_device.errors.FrameError`.
"""

from __future__ import annotations

import binascii
import contextlib
import enum
import logging
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final, TypeAlias

from wking_device.errors import ChecksumError, FrameError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "FRAME_OVERHEAD",
    "HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "MAX_PAYLOAD",
    "MAX_PING_DATA",
    "MAX_TEXT_BYTES",
    "PROTOCOL_VERSION",
    "RESULT_TYPES",
    "START_BYTE",
    "BatteryLevel",
    "Button",
    "ButtonAction",
    "ButtonPressed",
    "Command",
    "EqPreset",
    "Event",
    "EventCode",
    "Frame",
    "FrameType",
    "GetInfo",
    "GetState",
    "InfoResult",
    "LightMode",
    "MalformedCommand",
    "Opcode",
    "Ping",
    "PingResult",
    "PowerOff",
    "PowerOffReason",
    "PowerState",
    "PoweringOff",
    "Response",
    "Result",
    "SetEq",
    "SetLight",
    "SetVolume",
    "StateChanged",
    "StateResult",
    "Status",
    "UnknownEvent",
    "UnsupportedCommand",
    "crc16",
    "decode_frame",
    "encode_frame",
]

_LOGGER = logging.getLogger(__name__)

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

_HEADER = struct.Struct("<BBBBH")
_CRC = struct.Struct("<H")


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR).

    Args:
        data: The bytes to check.

    Returns:
        The 16-bit CRC; ``crc16(b"123456789") == 0x29B1``.
    """
    # binascii.crc_hqx is the same CRC-CCITT polynomial without reflection; with init 0xFFFF it
    # is exactly CCITT-FALSE, and it runs in C.
    return binascii.crc_hqx(data, 0xFFFF)


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


# --- validation helpers ---------------------------------------------------------------------------


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"{name} must be an integer {low}..{high}, got {value!r}")


def _coerce_enum(obj: object, attr: str, enum_type: type[enum.IntEnum]) -> None:
    value = getattr(obj, attr)
    if isinstance(value, enum_type):
        return
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            object.__setattr__(obj, attr, enum_type(value))
        except ValueError:
            pass
        else:
            return
    names = ", ".join(m.name for m in enum_type)
    raise UsageError(f"{attr} must be a {enum_type.__name__} ({names}), got {value!r}")


def _coerce_bytes(obj: object, attr: str, limit: int) -> None:
    value = getattr(obj, attr)
    if not isinstance(value, bytes | bytearray | memoryview):
        raise UsageError(f"{attr} must be bytes, got {type(value).__name__}")
    value = bytes(value)
    if len(value) > limit:
        raise UsageError(f"{attr} is {len(value)} bytes; at most {limit} fit in one frame")
    object.__setattr__(obj, attr, value)


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise UsageError(f"{name} must be a string, got {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise UsageError(f"{name} is not encodable as UTF-8: {value!r}") from exc
    if size > MAX_TEXT_BYTES:
        raise UsageError(f"{name} must be at most {MAX_TEXT_BYTES} UTF-8 bytes, got {value!r}")
    if not value.isprintable():
        raise UsageError(f"{name} must be printable text, got {value!r}")


def _encode_text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return bytes((len(raw),)) + raw


def _decode_text(payload: bytes, offset: int, name: str) -> tuple[str, int]:
    if offset >= len(payload):
        raise FrameError(f"{name}: payload ends before its length byte")
    size = payload[offset]
    end = offset + 1 + size
    if end > len(payload):
        raise FrameError(f"{name}: length {size} runs past the end of the payload")
    return payload[offset + 1 : end].decode("utf-8"), end


@contextlib.contextmanager
def _as_frame_error(what: str) -> Iterator[None]:
    """Turn a construction error, bad enum value or bad UTF-8 met while decoding into FrameError."""
    try:
        yield
    except FrameError:
        raise
    except (UsageError, ValueError) as exc:
        # UsageError: a field out of range; ValueError: an unknown enum value or bad UTF-8.
        detail = exc.message if isinstance(exc, UsageError) else str(exc)
        raise FrameError(f"malformed {what}: {detail}") from exc


def _expect_len(payload: bytes, size: int, what: str) -> None:
    if len(payload) != size:
        raise FrameError(f"{what} payload must be {size} bytes, got {len(payload)}")


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


# --- frames ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """Base of every frame.

    Attributes:
        seq: Sequence number 0-255. A response repeats its command's ``seq``; events carry the
            speaker's own counter. :meth:`FrameCodec.next_seq` hands out wrapping numbers.
    """

    frame_type: ClassVar[FrameType]

    seq: int

    def __post_init__(self) -> None:
        _check_int("seq", self.seq, 0, 0xFF)
        self._validate()

    def _validate(self) -> None:
        """Check the subclass's fields; raise UsageError on a bad one."""

    def _code_and_payload(self) -> tuple[int, bytes]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class Command(Frame):
    """Base of the typed commands a central sends."""

    frame_type: ClassVar[FrameType] = FrameType.COMMAND
    opcode: ClassVar[Opcode]

    def _payload(self) -> bytes:
        return b""

    def _code_and_payload(self) -> tuple[int, bytes]:
        return self.opcode, self._payload()

    @classmethod
    def _from_payload(cls, seq: int, payload: bytes) -> Command:
        _expect_len(payload, 0, cls.__name__)
        return cls(seq=seq)


@dataclass(frozen=True, slots=True, kw_only=True)
class GetInfo(Command):
    """Ask for model code, firmware, hardware revision and serial number (:class:`InfoResult`)."""

    opcode: ClassVar[Opcode] = Opcode.GET_INFO


@dataclass(frozen=True, slots=True, kw_only=True)
class GetState(Command):
    """Ask for volume, EQ, light, power and battery (:class:`StateResult`)."""

    opcode: ClassVar[Opcode] = Opcode.GET_STATE


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Command):
    """Ask the speaker to echo ``data`` (:class:`PingResult`).

    Attributes:
        data: Up to :data:`MAX_PING_DATA` bytes.
    """

    opcode: ClassVar[Opcode] = Opcode.PING
    data: bytes = b""

    def _validate(self) -> None:
        _coerce_bytes(self, "data", MAX_PING_DATA)

    def _payload(self) -> bytes:
        return self.data

    @classmethod
    def _from_payload(cls, seq: int, payload: bytes) -> Command:
        return cls(seq=seq, data=payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class SetVolume(Command):
    """Set the volume.

    Attributes:
        volume: 0-100.
    """

    opcode: ClassVar[Opcode] = Opcode.SET_VOLUME
    volume: int

    def _validate(self) -> None:
        _check_int("volume", self.volume, 0, 100)

    def _payload(self) -> bytes:
        return bytes((self.volume,))

    @classmethod
    def _from_payload(cls, seq: int, payload: bytes) -> Command:
        _expect_len(payload, 1, "SetVolume")
        return cls(seq=seq, volume=payload[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class SetEq(Command):
    """Select an EQ preset.

    Attributes:
        preset: The preset (an int is converted).
    """

    opcode: ClassVar[Opcode] = Opcode.SET_EQ
    preset: EqPreset

    def _validate(self) -> None:
        _coerce_enum(self, "preset", EqPreset)

    def _payload(self) -> bytes:
        return bytes((self.preset,))

    @classmethod
    def _from_payload(cls, seq: int, payload: bytes) -> Command:
        _expect_len(payload, 1, "SetEq")
        return cls(seq=seq, preset=EqPreset(payload[0]))


@dataclass(frozen=True, slots=True, kw_only=True)
class SetLight(Command):
    """Select a light mode.

    Attributes:
        mode: The mode (an int is converted).
    """

    opcode: ClassVar[Opcode] = Opcode.SET_LIGHT
    mode: LightMode

    def _validate(self) -> None:
        _coerce_enum(self, "mode", LightMode)

    def _payload(self) -> bytes:
        return bytes((self.mode,))

    @classmethod
    def _from_payload(cls, seq: int, payload: bytes) -> Command:
        _expect_len(payload, 1, "SetLight")
        return cls(seq=seq, mode=LightMode(payload[0]))


@dataclass(frozen=True, slots=True, kw_only=True)
class PowerOff(Command):
    """Ask the speaker to power off (it answers, sends :class:`PoweringOff`, then disconnects)."""

    opcode: ClassVar[Opcode] = Opcode.POWER_OFF


_COMMANDS: Final[dict[int, type[Command]]] = {
    cls.opcode: cls for cls in (GetInfo, GetState, Ping, SetVolume, SetEq, SetLight, PowerOff)
}


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsupportedCommand(Frame):
    """A well-framed command whose opcode this profile does not know.

    A peripheral gets this from :meth:`FrameCodec.next_event` instead of an error, so it can answer
    :attr:`Status.UNSUPPORTED` and keep the channel open. A central may send one to probe.

    Attributes:
        opcode: The unknown opcode, 0x00-0x7F.
        payload: The raw payload.
    """

    frame_type: ClassVar[FrameType] = FrameType.COMMAND
    opcode: int
    payload: bytes = b""

    def _validate(self) -> None:
        _check_int("opcode", self.opcode, 0, 0x7F)
        if self.opcode in _COMMANDS:
            raise UsageError(f"opcode 0x{self.opcode:02x} is a known command; use its class")
        _coerce_bytes(self, "payload", MAX_PAYLOAD)

    def _code_and_payload(self) -> tuple[int, bytes]:
        return self.opcode, self.payload


@dataclass(frozen=True, slots=True, kw_only=True)
class MalformedCommand(Frame):
    """A well-framed command with a known opcode whose payload is invalid (e.g. volume 150).

    A peripheral gets this instead of an error, so it can answer :attr:`Status.BAD_PARAM`; the
    framing was intact, so the byte stream is still in step. A central may send one on purpose
    to test a speaker.

    Attributes:
        opcode: The known opcode.
        payload: The raw, invalid payload.
        reason: Why it did not decode.
    """

    frame_type: ClassVar[FrameType] = FrameType.COMMAND
    opcode: Opcode
    payload: bytes = b""
    reason: str = ""

    def _validate(self) -> None:
        _coerce_enum(self, "opcode", Opcode)
        _coerce_bytes(self, "payload", MAX_PAYLOAD)

    def _code_and_payload(self) -> tuple[int, bytes]:
        return self.opcode, self.payload


@dataclass(frozen=True, slots=True, kw_only=True)
class Response(Frame):
    """A speaker's answer to a command; ``seq`` and ``opcode`` repeat the command's.

    Payload on the wire: one status byte, then (only for an OK answer to GET_INFO, GET_STATE or
    PING) the encoded result.

    Attributes:
        opcode: The command's opcode (an :class:`Opcode`, or a raw int 0x00-0x7F for a command
            the speaker did not know).
        status: The outcome.
        result: The typed result; required exactly when ``status`` is OK and the opcode has one.
    """

    frame_type: ClassVar[FrameType] = FrameType.RESPONSE
    opcode: Opcode | int
    status: Status = Status.OK
    result: Result | None = None

    def _validate(self) -> None:
        _check_int("opcode", self.opcode, 0, 0x7F)
        if self.opcode in _COMMANDS:
            object.__setattr__(self, "opcode", Opcode(self.opcode))
        _coerce_enum(self, "status", Status)
        expected = RESULT_TYPES.get(self.opcode) if self.status is Status.OK else None
        if expected is None:
            if self.result is not None:
                raise UsageError(
                    f"a {self.status.name} response to opcode 0x{self.opcode:02x} has no result"
                )
        elif not isinstance(self.result, expected):
            raise UsageError(
                f"an OK response to {Opcode(self.opcode).name} needs a {expected.__name__}, "
                f"got {self.result!r}"
            )

    @property
    def ok(self) -> bool:
        """Whether the status is :attr:`Status.OK`."""
        return self.status is Status.OK

    def _code_and_payload(self) -> tuple[int, bytes]:
        body = b"" if self.result is None else self.result.to_bytes()
        return self.opcode, bytes((self.status,)) + body

    @classmethod
    def _from_payload(cls, seq: int, opcode: int, payload: bytes) -> Response:
        if not payload:
            raise FrameError("response payload must start with a status byte")
        try:
            status = Status(payload[0])
        except ValueError as exc:
            raise FrameError(f"unknown response status 0x{payload[0]:02x}") from exc
        body = payload[1:]
        result: Result | None = None
        result_type = RESULT_TYPES.get(opcode) if status is Status.OK else None
        if result_type is not None:
            result = result_type.from_bytes(body)
        elif body:
            raise FrameError(f"a {status.name} response to opcode 0x{opcode:02x} has a body")
        return cls(seq=seq, opcode=opcode, status=status, result=result)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event(Frame):
    """Base of the unsolicited events a speaker notifies."""

    frame_type: ClassVar[FrameType] = FrameType.EVENT
    code: ClassVar[EventCode]

    def _payload(self) -> bytes:
        raise NotImplementedError

    def _code_and_payload(self) -> tuple[int, bytes]:
        return self.code, self._payload()

    @classmethod
    def _from_payload(cls, seq: int, payload: bytes) -> Event:
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged(Event):
    """Volume, EQ or light changed (by a command or on the speaker itself).

    Attributes:
        volume: 0-100.
        eq: The EQ preset.
        light: The light mode.
    """

    code: ClassVar[EventCode] = EventCode.STATE_CHANGED
    volume: int
    eq: EqPreset
    light: LightMode

    def _validate(self) -> None:
        _check_int("volume", self.volume, 0, 100)
        _coerce_enum(self, "eq", EqPreset)
        _coerce_enum(self, "light", LightMode)

    def _payload(self) -> bytes:
        return bytes((self.volume, self.eq, self.light))

    @classmethod
    def _from_payload(cls, seq: int, payload: bytes) -> Event:
        _expect_len(payload, 3, "StateChanged")
        return cls(seq=seq, volume=payload[0], eq=EqPreset(payload[1]), light=LightMode(payload[2]))


@dataclass(frozen=True, slots=True, kw_only=True)
class BatteryLevel(Event):
    """The battery level or charging state changed.

    Attributes:
        level: 0-100 %.
        charging: Whether it is charging.
    """

    code: ClassVar[EventCode] = EventCode.BATTERY_LEVEL
    level: int
    charging: bool = False

    def _validate(self) -> None:
        _check_int("level", self.level, 0, 100)
        if not isinstance(self.charging, bool):
            raise UsageError(f"charging must be a bool, got {self.charging!r}")

    def _payload(self) -> bytes:
        return bytes((self.level, int(self.charging)))

    @classmethod
    def _from_payload(cls, seq: int, payload: bytes) -> Event:
        _expect_len(payload, 2, "BatteryLevel")
        if payload[1] > 1:
            raise FrameError(f"BatteryLevel: charging flag must be 0 or 1, got {payload[1]}")
        return cls(seq=seq, level=payload[0], charging=bool(payload[1]))


@dataclass(frozen=True, slots=True, kw_only=True)
class ButtonPressed(Event):
    """A physical button was pressed.

    Attributes:
        button: Which button.
        action: How.
    """

    code: ClassVar[EventCode] = EventCode.BUTTON
    button: Button
    action: ButtonAction = ButtonAction.PRESS

    def _validate(self) -> None:
        _coerce_enum(self, "button", Button)
        _coerce_enum(self, "action", ButtonAction)

    def _payload(self) -> bytes:
        return bytes((self.button, self.action))

    @classmethod
    def _from_payload(cls, seq: int, payload: bytes) -> Event:
        _expect_len(payload, 2, "ButtonPressed")
        return cls(seq=seq, button=Button(payload[0]), action=ButtonAction(payload[1]))


@dataclass(frozen=True, slots=True, kw_only=True)
class PoweringOff(Event):
    """The speaker will power off (and drop the link) in ``delay_s`` seconds.

    Attributes:
        reason: Why.
        delay_s: Seconds until power-off, 0-255.
    """

    code: ClassVar[EventCode] = EventCode.POWERING_OFF
    reason: PowerOffReason
    delay_s: int = 0

    def _validate(self) -> None:
        _coerce_enum(self, "reason", PowerOffReason)
        _check_int("delay_s", self.delay_s, 0, 0xFF)

    def _payload(self) -> bytes:
        return bytes((self.reason, self.delay_s))

    @classmethod
    def _from_payload(cls, seq: int, payload: bytes) -> Event:
        _expect_len(payload, 2, "PoweringOff")
        return cls(seq=seq, reason=PowerOffReason(payload[0]), delay_s=payload[1])


_EVENTS: Final[dict[int, type[Event]]] = {
    cls.code: cls for cls in (StateChanged, BatteryLevel, ButtonPressed, PoweringOff)
}


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(Frame):
    """A well-framed event whose code this profile does not know (from newer firmware).

    A central gets this instead of an error and may ignore it.

    Attributes:
        code: The event code, 0x80-0xFF.
        payload: The raw payload.
    """

    frame_type: ClassVar[FrameType] = FrameType.EVENT
    code: int
    payload: bytes = b""

    def _validate(self) -> None:
        _check_int("code", self.code, 0x80, 0xFF)
        if self.code in _EVENTS:
            raise UsageError(f"event code 0x{self.code:02x} is a known event; use its class")
        _coerce_bytes(self, "payload", MAX_PAYLOAD)

    def _code_and_payload(self) -> tuple[int, bytes]:
        return self.code, self.payload


# --- whole-frame encoding -------------------------------------------------------------------------


def encode_frame(frame: Frame) -> bytes:
    """Encode one frame to its wire bytes (not fragmented).

    Args:
        frame: Any frame.

    Returns:
        ``start | ver/type | seq | opcode | length | payload | crc``.

    Raises:
        UsageError: ``frame`` is not a frame.
    """
    if not isinstance(frame, Frame) or type(frame) in (Frame, Command, Event):
        raise UsageError(f"not a concrete wking-v1 frame: {frame!r}")
    code, payload = frame._code_and_payload()
    if len(payload) > MAX_PAYLOAD:  # pragma: no cover - construction already bounds every field
        raise UsageError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    head = _HEADER.pack(
        START_BYTE, (PROTOCOL_VERSION << 4) | frame.frame_type, frame.seq, code, len(payload)
    )
    body = head + payload
    return body + _CRC.pack(crc16(memoryview(body)[1:]))


def check_header_prefix(prefix: bytes | bytearray) -> None:
    """Validate the first one or two header bytes as soon as they arrive (fail fast).

    Args:
        prefix: At least one byte of a frame.

    Raises:
        FrameError: Bad start byte, version or frame type.
    """
    if prefix[0] != START_BYTE:
        raise FrameError(f"expected start byte 0x{START_BYTE:02x}, got 0x{prefix[0]:02x}")
    if len(prefix) >= 2:
        version, ftype = prefix[1] >> 4, prefix[1] & 0x0F
        if version != PROTOCOL_VERSION:
            raise FrameError(f"unsupported protocol version {version} (this codec speaks 1)")
        if ftype not in FrameType._value2member_map_:
            raise FrameError(f"unknown frame type 0x{ftype:x}")


def parse_header(header: bytes | bytearray) -> tuple[FrameType, int, int, int]:
    """Parse and check a 6-byte header.

    Args:
        header: The first :data:`HEADER_SIZE` bytes of a frame.

    Returns:
        ``(frame_type, seq, code, payload_length)``.

    Raises:
        FrameError: Bad start byte, version, type, code range or length.
    """
    check_header_prefix(header)
    _, vt, seq, code, length = _HEADER.unpack_from(header)
    ftype = FrameType(vt & 0x0F)
    if length > MAX_PAYLOAD:
        raise FrameError(f"payload length {length} exceeds the maximum of {MAX_PAYLOAD}")
    is_event_code = code >= 0x80
    if is_event_code != (ftype is FrameType.EVENT):
        raise FrameError(f"code 0x{code:02x} is not valid for frame type {ftype.name}")
    return ftype, seq, code, length


def decode_body(ftype: FrameType, seq: int, code: int, payload: bytes) -> Frame:
    """Turn a checked header and payload into a typed frame.

    Raises:
        FrameError: The payload does not decode (never for commands: see
            :class:`MalformedCommand`).
    """
    if ftype is FrameType.COMMAND:
        command_cls = _COMMANDS.get(code)
        if command_cls is None:
            return UnsupportedCommand(seq=seq, opcode=code, payload=payload)
        try:
            return command_cls._from_payload(seq, payload)
        except (FrameError, UsageError, ValueError) as exc:
            reason = exc.message if isinstance(exc, FrameError | UsageError) else str(exc)
            return MalformedCommand(
                seq=seq, opcode=command_cls.opcode, payload=payload, reason=reason
            )
    with _as_frame_error(f"{ftype.name.lower()} 0x{code:02x}"):
        if ftype is FrameType.RESPONSE:
            return Response._from_payload(seq, code, payload)
        event_cls = _EVENTS.get(code)
        if event_cls is None:
            return UnknownEvent(seq=seq, code=code, payload=payload)
        return event_cls._from_payload(seq, payload)


def check_crc(frame_bytes: bytes) -> None:
    """Check the trailing CRC of one complete frame.

    Raises:
        ChecksumError: It does not match.
    """
    (received,) = _CRC.unpack_from(frame_bytes, len(frame_bytes) - _CRC_SIZE)
    computed = crc16(memoryview(frame_bytes)[1:-_CRC_SIZE])
    if received != computed:
        raise ChecksumError(f"frame CRC 0x{received:04x} does not match computed 0x{computed:04x}")


def decode_frame(data: bytes | bytearray | memoryview) -> Frame:
    """Decode exactly one complete frame.

    Args:
        data: The frame's bytes, nothing more or less.

    Returns:
        The typed frame.

    Raises:
        FrameError: Malformed bytes (including a wrong total length).
        ChecksumError: The CRC does not match.
    """
    raw = bytes(data)
    if len(raw) < FRAME_OVERHEAD:
        if raw:
            check_header_prefix(raw)
        raise FrameError(f"a frame is at least {FRAME_OVERHEAD} bytes, got {len(raw)}")
    ftype, seq, code, length = parse_header(raw)
    if len(raw) != FRAME_OVERHEAD + length:
        raise FrameError(f"header says {FRAME_OVERHEAD + length} bytes, got {len(raw)}")
    check_crc(raw)
    return decode_body(ftype, seq, code, raw[HEADER_SIZE:-_CRC_SIZE])
