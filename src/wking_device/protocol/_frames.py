"""Typed frames of the ``wking-v1`` protocol: commands, responses and events.

This module owns the frame vocabulary (the typed commands a central sends, the response that
answers them with a typed result, the unsolicited events a speaker notifies, and the frames
that stand for an unknown or malformed one), the validation each frame does on construction,
each frame's opcode or event code and payload, and the tables from codes to frame classes. It
does not wrap a payload in a header and CRC or unwrap one (``_wire``), nor buffer, fragment or
track roles (:class:`wking_device.protocol.FrameCodec`). It does no I/O.

Constructing a frame with a bad value (volume 101, an unknown EQ preset, a 40-byte serial
number) raises :class:`~wking_device.errors.UsageError`: the caller asked for something that
cannot be said in this protocol. The same problem found in bytes from the air raises
:class:`~wking_device.errors.FrameError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Final

from wking_device.errors import FrameError, UsageError
from wking_device.protocol._fields import (
    _check_int,
    _coerce_bytes,
    _coerce_enum,
    _expect_len,
)
from wking_device.protocol._results import RESULT_TYPES, Result
from wking_device.protocol._vocabulary import (
    MAX_PAYLOAD,
    MAX_PING_DATA,
    Button,
    ButtonAction,
    EqPreset,
    EventCode,
    FrameType,
    LightMode,
    Opcode,
    PowerOffReason,
    Status,
)

__all__ = [
    "BatteryLevel",
    "ButtonPressed",
    "Command",
    "Event",
    "Frame",
    "GetInfo",
    "GetState",
    "MalformedCommand",
    "Ping",
    "PowerOff",
    "PoweringOff",
    "Response",
    "SetEq",
    "SetLight",
    "SetVolume",
    "StateChanged",
    "UnknownEvent",
    "UnsupportedCommand",
]

_LOGGER = logging.getLogger(__name__)

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
