"""Sealer.open_row (the claim's path) opens exactly what Sealer.open opens, and refuses the same."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest

from wking_device.crypto import Sealer
from wking_device.errors import RecordCorrupt


@pytest.fixture(name="sealer")
def fixture_sealer() -> Sealer:
    sealer = Sealer(3, os.urandom(32))
    sealer.set_block(0)
    return sealer


def _row(sealer: Sealer, n: int, category: str = "operation_logs") -> tuple[Any, ...]:
    record_id = f"r{n:031x}"
    created, expires = 1.7e9 + n, 1.8e9 + n
    payload = sealer.seal(
        record_id, category, b'{"n":%d}' % n, created_at=created, expires_at=expires
    )
    return record_id, category, payload, created, expires


def test_open_row_opens_what_open_opens(sealer: Sealer) -> None:
    rows = [_row(sealer, n, category) for n in range(5) for category in ("a", "é", "b+c")]
    for record_id, category, payload, created, expires in rows * 2:  # cold, then cached parts
        assert sealer.open_row(record_id, category, payload, created, expires) == sealer.open(
            record_id, category, payload, created_at=created, expires_at=expires
        )


@pytest.mark.parametrize(
    "change",
    [
        {"record_id": "r" + "0" * 30 + "9"},  # another row's id
        {"category": "diagnostics"},
        {"created": 1.7e9 + 0.5},
        {"expires": 1.9e9},
        {"expires": math.inf},
        {"created": math.nan},
        {"created": 1700000001},  # an int (another time)
        {"flip": 20},  # inside the ciphertext
        {"flip": 0},  # the envelope version
        {"payload": b"\x02short"},
        {"payload": "text"},
        {"record_id": 5},
    ],
)
def test_open_row_refuses_what_open_refuses(sealer: Sealer, change: dict[str, Any]) -> None:
    record_id, category, payload, created, expires = _row(sealer, 0)
    sealer.open_row(record_id, category, payload, created, expires)  # the category is known now
    record_id = change.get("record_id", record_id)
    category = change.get("category", category)
    created = change.get("created", created)
    expires = change.get("expires", expires)
    if "flip" in change:
        data = bytearray(payload)
        data[change["flip"]] ^= 1
        payload = bytes(data)
    payload = change.get("payload", payload)
    with pytest.raises(RecordCorrupt):
        sealer.open(record_id, category, payload, created_at=created, expires_at=expires)
    with pytest.raises(RecordCorrupt):
        sealer.open_row(record_id, category, payload, created, expires)


def test_open_row_takes_an_int_time_as_open_does(sealer: Sealer) -> None:
    record_id, category, payload, created, expires = _row(sealer, 0)
    assert created == int(created)
    assert sealer.open_row(record_id, category, payload, int(created), expires) == sealer.open(
        record_id, category, payload, created_at=int(created), expires_at=expires
    )
