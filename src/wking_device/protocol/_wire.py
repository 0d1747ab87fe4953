"""One whole ``wking-v1`` frame to and from its bytes: header, payload and CRC.

This module owns the wire format below, :func:`crc16`, :func:`encode_frame` and
:func:`decode_frame`, and the steps :class:`~wking_device.protocol.FrameCodec` runs one at a time
on a stream (check a header's first bytes, parse a header, check a CRC, decode a body). It does
not buffer, fragment or track roles (``_codec``), and it defines no frame (``_frames``). It does
no I/O.

Wire format (all multi-byte integers little-endian, as everywhere in Bluetooth)::

    offset  size  field
    0       1     start byte 0xA5
    1       1     version (high nibble, 1) | frame type (low nibble: 1 command, 2 response, 3 event)
    2       1     sequence number 0-255 (wraps)
    3       1     opcode (commands/responses 0x00-0x7F) or event code (0x80-0xFF)
    4       2     payload length N, 0..MAX_PAYLOAD
    6       N     payload
    6+N     2     CRC-16/CCITT-FALSE over bytes 1 .. 5+N
"""

from __future__ import annotations

import binascii
import struct

from wking_device.errors import ChecksumError, FrameError, UsageError
from wking_device.protocol._fields import _as_frame_error
from wking_device.protocol._frames import (
    _COMMANDS,
    _EVENTS,
    Command,
    Event,
    Frame,
    MalformedCommand,
    Response,
    UnknownEvent,
    UnsupportedCommand,
)
from wking_device.protocol._vocabulary import (
    _CRC_SIZE,
    FRAME_OVERHEAD,
    HEADER_SIZE,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    START_BYTE,
    FrameType,
)

__all__ = [
    "crc16",
    "decode_frame",
    "encode_frame",
]

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
