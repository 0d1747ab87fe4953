"""Record ids: UUIDv7 layout, time-ordered, never MAC-shaped, the same bits as first written."""

from __future__ import annotations

import subprocess
import sys
import threading
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
    monkeypatch.setattr(models.os, "urandom", lambda n: raw * (n // 10))
    monkeypatch.setattr(models.time, "time_ns", lambda: ms * 1_000_000 + 999_999)
    models._RANDOM.clear()  # drawn from the patched source from here on
    assert new_record_id() == _reference(ms, int.from_bytes(raw, "big"))
    assert new_record_id() == _reference(ms, int.from_bytes(raw, "big"))  # a drawn one too
    models._RANDOM.clear()


def test_every_id_of_a_draw_takes_its_own_ten_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # distinct bytes per id (and all 256 byte values at each position): an id made from its
    # neighbour's bits, or bits shifted across ids, differs from the reference
    raw = bytes((7 * k + 31 * (k // 10)) % 256 for k in range(10 * models._DRAWN))
    chunks = [raw[i : i + 10] for i in range(0, len(raw), 10)]
    monkeypatch.setattr(models.os, "urandom", lambda n: raw[:n])
    monkeypatch.setattr(models.time, "time_ns", lambda: 1_795_000_000_123 * 1_000_000)
    models._RANDOM.clear()
    ids = [new_record_id() for _ in range(models._DRAWN)]
    models._RANDOM.clear()
    # the first id takes the last chunk drawn (the rest are kept in order for the ids after it)
    expected = [chunks[-1], *chunks[:-1]]
    assert ids == [_reference(1_795_000_000_123, int.from_bytes(c, "big")) for c in expected]


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


def test_ids_are_unique_across_threads_sharing_the_drawn_values() -> None:
    def draw(out: list[str]) -> None:
        out.extend(new_record_id() for _ in range(5_000))

    lists: list[list[str]] = [[] for _ in range(8)]
    threads = [threading.Thread(target=draw, args=(out,)) for out in lists]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = [i for out in lists for i in out]
    assert len(ids) == 40_000
    assert len(set(ids)) == len(ids)


_FORK = """
import os
from wking_device.models import new_record_id

new_record_id()  # values drawn ahead in the parent, shared with a child made by fork
read, write = os.pipe()
pid = os.fork()
if pid == 0:  # the child: its ids, then out at once
    os.write(write, ",".join(new_record_id() for _ in range(100)).encode())
    os._exit(0)
os.close(write)
mine = {new_record_id() for _ in range(100)}
with os.fdopen(read, "rb") as pipe:
    theirs = set(pipe.read().decode().split(","))
os.waitpid(pid, 0)
# 76 random bits: the two sides share none unless the child reused the parent's draws
print(len(theirs), len({i[12:] for i in mine} & {i[12:] for i in theirs}))
"""


def test_a_forked_process_never_repeats_its_parents_ids() -> None:
    # in a fresh interpreter: one thread, so fork is safe (and warns about nothing)
    out = subprocess.run(
        [sys.executable, "-c", _FORK], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["100", "0"]
