"""The sans-IO frame codec: bytes in, frames out, and the reverse, with ATT-MTU fragmentation.

This module owns buffering and reassembly of received fragments, fragmentation of sent frames to
``MTU - 3`` bytes, the role rules (a central sends commands and receives responses and events; a
peripheral the reverse) and the error state. It does not do I/O, time out, retry or correlate
responses with commands (the BLE layer's device session does that with :attr:`Frame.seq`).

Usage follows h11: feed what the link delivered to :meth:`FrameCodec.receive_data`, then call
:meth:`FrameCodec.next_event` until it returns :data:`NEED_DATA`; call :meth:`FrameCodec.send`
and write each returned fragment as one ATT write (central) or notification (peripheral).

A receiver that gets each ATT write or notification whole can use
:meth:`FrameCodec.receive_fragment` instead: it resynchronises on fragment boundaries by the rule
``docs/protocol.md`` states (a broken frame is reported as a :class:`BrokenFrame` and dropped; the
codec never enters ERROR).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

from wking_device.errors import CodecStateError, FrameError, ProtocolError, UsageError
from wking_device.protocol._frames import Frame
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
from wking_device.protocol._vocabulary import FRAME_OVERHEAD, HEADER_SIZE, MAX_FRAME_SIZE, FrameType
from wking_device.protocol._wire import (
    check_crc,
    check_header_prefix,
    decode_body,
    encode_frame,
    parse_header,
)

__all__ = [
    "ATT_HEADER_SIZE",
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MTU",
    "MAX_MTU",
    "MIN_MTU",
    "NEED_DATA",
    "BrokenFrame",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokenFrame:
    """A frame :meth:`FrameCodec.receive_fragment` dropped to get back in step.

    ``frame_type``, ``seq`` and ``code`` come from the frame's header when one was received;
    the CRC did not confirm them, so a session fails a waiting command only when both its seq
    and its opcode match. A fragment that could not start a frame has none of them.

    Attributes:
        reason: Why it was dropped.
        size: Bytes dropped with it.
        frame_type: The header's frame type, if a header arrived.
        seq: The header's sequence number, if a header arrived.
        code: The header's opcode or event code, if a header arrived.
    """

    reason: str
    size: int
    frame_type: FrameType | None = None
    seq: int | None = None
    code: int | None = None


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
        self._fragments: list[bytes] = []
        """receive_fragment(): the fragments of the frame being reassembled, in order."""
        self._state = CodecState.READY
        self._cause: str | None = None
        self._seq = 0

    def __repr__(self) -> str:
        return (
            f"<FrameCodec role={self._role.value} state={self._state.value} mtu={self._mtu} "
            f"buffered={self.buffered}>"
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
        return len(self._buffer) + sum(len(f) for f in self._fragments)

    @property
    def partial_header(self) -> tuple[FrameType, int, int] | None:
        """``(frame_type, seq, code)`` of the frame :meth:`receive_fragment` is reassembling.

        ``None`` when no frame is in progress or its 6-byte header is not complete yet.
        """
        if not self._fragments:
            return None
        head = b"".join(self._fragments)[:HEADER_SIZE]
        if len(head) < HEADER_SIZE:
            return None
        ftype, seq, code, _ = parse_header(head)  # checked when the fragment was taken
        return ftype, seq, code

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

    def receive_fragment(self, data: bytes | bytearray | memoryview) -> list[Frame | BrokenFrame]:
        """Feed exactly one ATT write or notification; return the frames and the broken frames.

        Unlike :meth:`receive_data`, bad bytes never raise and never put the codec in ERROR:
        the codec resynchronises on fragment boundaries (a sender starts every frame in a new
        fragment and never puts the end of one frame and the start of the next in one):

        1. with no frame in progress, a fragment must begin with a valid header, else it is
           dropped;
        2. a fragment longer than the bytes the frame in progress still lacks cannot continue
           it: that frame was cut short and is dropped, and the fragment starts a new frame;
        3. a complete frame that fails its CRC or does not decode is dropped; those of its
           later fragments that begin with a valid header are taken as new frame starts.

        Do not mix with :meth:`receive_data` on one codec.

        Args:
            data: One fragment, whole.

        Returns:
            Completed frames and :class:`BrokenFrame` reports, in the order found.

        Raises:
            CodecStateError: The codec is in the ERROR state (after a receive_data error).
            UsageError: ``data`` is not bytes-like, or receive_data() bytes are buffered.
        """
        self._advance(Op.RECEIVE_DATA)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise UsageError(f"receive_fragment() takes bytes, got {type(data).__name__}")
        if self._buffer:
            raise UsageError("receive_fragment() cannot follow receive_data() bytes; reset() first")
        out: list[Frame | BrokenFrame] = []
        self._take_fragment(bytes(data), out)
        return out

    def drop_partial(self, reason: str = "incomplete frame dropped") -> list[Frame | BrokenFrame]:
        """Drop the frame :meth:`receive_fragment` is reassembling (e.g. its command timed out).

        Its later fragments that begin with a valid header are taken as new frame starts, as
        after any broken frame (rule 3), so a short frame held as a continuation comes out.

        Args:
            reason: Put in the :class:`BrokenFrame` report.

        Returns:
            The report of the dropped frame first, then whatever the replay found; empty when
            no frame was in progress.
        """
        if not self._fragments:
            return []
        out: list[Frame | BrokenFrame] = []
        self._drop_and_replay(reason, out)
        return out

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
        self._fragments = []
        self._cause = None

    # --- internals ------------------------------------------------------------------------------

    def _start_problem(self, data: bytes) -> str | None:
        """Why ``data`` (the start of a frame, possibly only partly received) cannot start one."""
        try:
            check_header_prefix(data[:2])
            if len(data) >= HEADER_SIZE:
                ftype, _seq, code, _length = parse_header(data)
                if ftype not in RECEIVES[self._role]:
                    return role_receive_message(self._role, ftype, code)
        except ProtocolError as exc:
            return exc.message
        return None

    def _broken(self, data: bytes, reason: str) -> BrokenFrame:
        _LOGGER.debug("codec (%s) dropped %d bytes: %s", self._role.value, len(data), reason)
        if len(data) >= HEADER_SIZE and self._start_problem(data) is None:
            ftype, seq, code, _ = parse_header(data)
            return BrokenFrame(reason=reason, size=len(data), frame_type=ftype, seq=seq, code=code)
        return BrokenFrame(reason=reason, size=len(data))

    def _take_fragment(self, fragment: bytes, out: list[Frame | BrokenFrame]) -> None:
        if not fragment:
            return
        if self._fragments:
            held = b"".join(self._fragments)
            joined_head = (held + fragment)[:HEADER_SIZE]
            problem = self._start_problem(joined_head)
            if problem is None and len(joined_head) >= HEADER_SIZE:
                lacking = FRAME_OVERHEAD + parse_header(joined_head)[3] - len(held)
                if len(fragment) > lacking:
                    problem = (
                        f"frame cut short: {len(fragment)}-byte fragment where "
                        f"{lacking} bytes were missing"
                    )
            if problem is not None:
                self._drop_and_replay(problem, out)
                self._take_fragment(fragment, out)
                return
            self._fragments.append(fragment)
        else:
            problem = self._start_problem(fragment)
            if problem is not None:
                out.append(self._broken(fragment, f"fragment does not start a frame: {problem}"))
                return
            self._fragments = [fragment]
        self._complete(out)

    def _complete(self, out: list[Frame | BrokenFrame]) -> None:
        data = b"".join(self._fragments)
        if len(data) < HEADER_SIZE:
            return
        ftype, seq, code, length = parse_header(data)
        total = FRAME_OVERHEAD + length
        if len(data) < total:
            return
        raw, rest = data[:total], data[total:]
        try:
            check_crc(raw)
            frame = decode_body(ftype, seq, code, raw[HEADER_SIZE:-2])
        except ProtocolError as exc:
            self._drop_and_replay(exc.message, out)
            return
        self._fragments = []
        out.append(frame)
        if rest:  # a sender that joined whole frames in one fragment: take the next one
            self._take_fragment(rest, out)

    def _drop_and_replay(self, reason: str, out: list[Frame | BrokenFrame]) -> None:
        """Drop the frame in progress; its later fragments that can start a frame start one."""
        fragments, self._fragments = self._fragments, []
        later = fragments[1:]
        dropped = [fragments[0]]
        while later and self._start_problem(later[0]) is not None:
            dropped.append(later.pop(0))
        out.append(self._broken(b"".join(dropped), reason))
        for fragment in later:
            self._take_fragment(fragment, out)

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
