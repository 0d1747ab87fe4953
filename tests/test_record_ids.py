"""Record ids: UUIDv7 layout, time-ordered, never MAC-shaped, the same bits as first written."""

from __future__ import annotations

import time
import uuid

import pytest

from wking_device import models
from wking_device._redact import MAC_RE
from wking_device.models import new_record_id


def _reference(ms: int, rand: int) -> str:
    """The id as first written (RFC 9562 version 7 layout, step by step)."""
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 4) & ((1 << 76) - 1)
    value = (value & ~(0xC << 60)) | (0x8 << 60)
    return f"{value:032x}"


@pytest.mark.parametrize(
    ("ms", "raw"),
    [
        (0, bytes(10)),
        (1_795_000_000_123, b"\xff" * 10),
        (2**48 + 5, bytes(range(10))),  # past 48 bits: wraps like the reference
        (1_733_045_123_456, b"\x0c" * 10),
    ],
)
def test_an_id_has_the_same_bits_as_the_reference(
    monkeypatch: pytest.MonkeyPatch, ms: int, raw: bytes
) -> None:
    monkeypatch.setattr(models.os, "urandom", lambda n: raw[:n])
    monkeypatch.setattr(models.time, "time_ns", lambda: ms * 1_000_000 + 999_999)
    assert new_record_id() == _reference(ms, int.from_bytes(raw, "big"))


def test_ids_are_version_7_uuids_in_time_order_and_never_mac_shaped() -> None:
    ids = [new_record_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for record_id in ids:
        assert len(record_id) == 32
        parsed = uuid.UUID(hex=record_id)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert MAC_RE.search(record_id) is None
    now = time.time_ns() // 1_000_000
    assert abs(int(ids[-1][:12], 16) - now) < 60_000
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)
