"""Checks and codecs of single fields, shared by the typed results and the frames.

This module owns what a field of a frame or a result must be (an integer in range, an enum
member, bounded bytes, short printable UTF-8 text), the length-prefixed text encoding, and the
translation of a construction error met while decoding into a
:class:`~wking_device.errors.FrameError`. It defines no frame or result and knows no opcode;
it does no I/O.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from wking_device.errors import FrameError, UsageError
from wking_device.protocol._vocabulary import MAX_TEXT_BYTES

if TYPE_CHECKING:
    import enum
    from collections.abc import Iterator

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
