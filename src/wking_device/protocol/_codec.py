"""The sans-IO frame codec: bytes in, frames out, and the reverse, with ATT-MTU fragmentation.

This module owns buffering and reassembly of received fragments, fragmentation of sent frames to
``MTU - 3`` bytes, the role rules (a central sends commands and receives responses and events; a
peripheral the reverse) and the error state. It does not do I/O, time out, retry or correlate
responses with commands (the BLE layer's device session does that with :attr:`Frame.seq`).

Usage follows h11: feed what the link delivered to :meth:`FrameCodec.receive_data`, then call
:meth:`FrameCodec.next_event` until it returns :data:`NEED_DATA`; call :meth:`FrameCodec.send`
and write each returned fragment as one ATT write (central) or notification (peripheral).
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Final, Literal, NoReturn

from wking_device.errors import CodecStateError, FrameError, ProtocolError, UsageError
from wking_device.protocol._frames import (
    FRAME_OVERHEAD,
    HEADER_SIZE,
    MAX_FRAME_SIZE,
    Frame,
    check_crc,
    check_header_prefix,
    decode_body,
    encode_frame,
    parse_header,
)
from wking_device.protocol._state import (
    RECEIVES,
    SENDS,
    CodecState,
    Op,
    Role,
    misuse_message,
    role_receive_message,
    role_send_message,
    transition,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "ATT_HEADER_SIZE",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MTU",
    "MAX_MTU",
    "MIN_MTU",
    "NEED_DATA",
    "FrameCodec",
    "NeedData",
]

_LOGGER = logging.getLogger(__name__)

#: The ATT default MTU (Bluetooth Core, Vol 3, Part F, 3.2.8); every link starts here.
DEFAULT_MTU: Final = 23
MIN_MTU: Final = 23
#: Largest ATT MTU in practice (512-byte attribute value + 5 bytes of ATT header room).
MAX_MTU: Final = 517
#: An ATT write or notification spends 3 bytes (opcode + handle) of the MTU.
ATT_HEADER_SIZE: Final = 3
#: Bytes :meth:`FrameCodec.receive_data` may hold before the caller drains them with next_event.
DEFAULT_MAX_BUFFER: Final = 16 * MAX_FRAME_SIZE


class NeedData(enum.Enum):
    """Type of the :data:`NEED_DATA` sentinel."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`FrameCodec.next_event` when no complete frame is buffered yet.
NEED_DATA: Final = NeedData.NEED_DATA


class FrameCodec:
    """A ``wking-v1`` frame codec for one end of one link.

    Args:
        role: Which end this codec is on.
        mtu: The negotiated ATT MTU (23..517); fragments are at most ``mtu - 3`` bytes. It can be
            changed later with :attr:`mtu` (e.g. after an MTU exchange).
        max_buffer: Most bytes held between :meth:`receive_data` and :meth:`next_event`.

    Raises:
        UsageError: ``mtu`` or ``max_buffer`` is out of range.
    """

    def __init__(
        self,
        role: Role,
        *,
        mtu: int = DEFAULT_MTU,
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        try:
            self._role = Role(role)
        except ValueError:
            raise UsageError(
                f"role must be Role.CENTRAL or Role.PERIPHERAL, got {role!r}"
            ) from None
        self._mtu = _check_mtu(mtu)
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int):
            raise UsageError(f"max_buffer must be an int, got {max_buffer!r}")
        if max_buffer < MAX_FRAME_SIZE:
            raise UsageError(f"max_buffer must hold one frame ({MAX_FRAME_SIZE} bytes)")
        self._max_buffer = max_buffer
        self._buffer = bytearray()
        self._state = CodecState.READY
        self._cause: str | None = None
        self._seq = 0

    def __repr__(self) -> str:
        return (
            f"<FrameCodec role={self._role.value} state={self._state.value} mtu={self._mtu} "
            f"buffered={len(self._buffer)}>"
        )

    # --- properties -----------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        """This codec's role."""
        return self._role

    @property
    def state(self) -> CodecState:
        """``READY`` or ``ERROR``."""
        return self._state

    @property
    def mtu(self) -> int:
        """The ATT MTU used to fragment outgoing frames."""
        return self._mtu

    @mtu.setter
    def mtu(self, value: int) -> None:
        self._advance(Op.SET_MTU)
        self._mtu = _check_mtu(value)

    @property
    def max_fragment(self) -> int:
        """Largest fragment :meth:`send` returns: ``mtu - 3``."""
        return self._mtu - ATT_HEADER_SIZE

    @property
    def buffered(self) -> int:
        """Received bytes not yet returned as frames."""
        return len(self._buffer)

    @property
    def error(self) -> str | None:
        """The message of the error that put the codec in ``ERROR``, else ``None``."""
        return self._cause

    # --- operations -----------------------------------------------------------------------------

    def next_seq(self) -> int:
        """Hand out the next sequence number for a frame this end originates (wraps 255 -> 0).

        A central numbers its commands with it; a peripheral its events (responses repeat the
        command's number instead).
        """
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        return seq

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes the link delivered (one ATT write or notification, or any part of one).

        Args:
            data: Raw bytes; an empty value is ignored.

        Raises:
            CodecStateError: The codec is in the ERROR state.
            FrameError: More than ``max_buffer`` bytes would be held; drain with next_event().
            UsageError: ``data`` is not bytes-like.
        """
        self._advance(Op.RECEIVE_DATA)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise UsageError(f"receive_data() takes bytes, got {type(data).__name__}")
        if len(self._buffer) + len(data) > self._max_buffer:
            self._fail_with(
                FrameError(
                    f"receive buffer would hold {len(self._buffer) + len(data)} bytes "
                    f"(limit {self._max_buffer}); call next_event() to drain it"
                )
            )
        self._buffer += data

    def next_event(self) -> Frame | Literal[NeedData.NEED_DATA]:
        """Return the next complete frame, or :data:`NEED_DATA`.

        Raises:
            CodecStateError: The codec is in the ERROR state.
            FrameError: The bytes are not a valid frame, or a frame type this role never
                receives; the codec moves to ERROR.
            ChecksumError: A frame's CRC does not match; the codec moves to ERROR.
        """
        self._advance(Op.NEXT_EVENT)
        buf = self._buffer
        if not buf:
            return NEED_DATA
        try:
            check_header_prefix(buf[:2])
            if len(buf) < HEADER_SIZE:
                return NEED_DATA
            ftype, seq, code, length = parse_header(buf)
            if ftype not in RECEIVES[self._role]:
                raise FrameError(role_receive_message(self._role, ftype, code))
            total = FRAME_OVERHEAD + length
            if len(buf) < total:
                return NEED_DATA
            raw = bytes(buf[:total])
            del buf[:total]
            check_crc(raw)
            return decode_body(ftype, seq, code, raw[HEADER_SIZE:-2])
        except ProtocolError as exc:
            self._fail_with(exc)

    def receive(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Feed ``data`` and return every frame it completed (receive_data + next_event loop).

        Raises:
            CodecStateError: The codec is in the ERROR state.
            FrameError: As :meth:`next_event`; frames completed before the bad one are lost
                with it, since the link has to be resynchronised anyway.
        """
        self.receive_data(data)
        frames: list[Frame] = []
        while (frame := self.next_event()) is not NEED_DATA:
            frames.append(frame)
        return frames

    def send(self, frame: Frame) -> list[bytes]:
        """Encode ``frame`` and split it into fragments of at most ``mtu - 3`` bytes.

        Args:
            frame: A frame this role may send.

        Returns:
            The fragments, in order; write each as one ATT write or notification.

        Raises:
            CodecStateError: The codec is in the ERROR state, or this role may not send
                ``frame``'s type (e.g. a central sending a response).
        """
        self._advance(Op.SEND)
        ftype = getattr(type(frame), "frame_type", None)
        if ftype is not None and ftype not in SENDS[self._role]:
            raise CodecStateError(role_send_message(self._role, ftype, type(frame).__name__))
        data = encode_frame(frame)
        size = self.max_fragment
        return [data[i : i + size] for i in range(0, len(data), size)]

    def send_many(self, frames: Iterable[Frame]) -> list[bytes]:
        """Fragments of several frames, each frame starting a new fragment."""
        return [fragment for frame in frames for fragment in self.send(frame)]

    def reset(self) -> None:
        """Drop buffered bytes and leave the ERROR state; the MTU and seq counter are kept."""
        self._state = transition(self._state, Op.RESET) or CodecState.READY
        self._buffer.clear()
        self._cause = None

    # --- internals ------------------------------------------------------------------------------

    def _advance(self, op: Op) -> None:
        nxt = transition(self._state, op)
        if nxt is None:
            raise CodecStateError(misuse_message(self._state, op, self._cause))
        self._state = nxt

    def _fail_with(self, exc: ProtocolError) -> NoReturn:
        """Move to ERROR, remember why, and raise ``exc``."""
        self._state = transition(self._state, Op.FAIL) or CodecState.ERROR
        self._cause = exc.message
        self._buffer.clear()
        _LOGGER.debug("codec (%s) failed: %s", self._role.value, exc.message)
        raise exc


def _check_mtu(mtu: int) -> int:
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not MIN_MTU <= mtu <= MAX_MTU:
        raise UsageError(f"ATT MTU must be an integer {MIN_MTU}..{MAX_MTU}, got {mtu!r}")
    return mtu
