"""Codec benchmark: ``wking-v1`` frames encoded and decoded per second.

Subject: a central ``FrameCodec`` encodes ``SetVolume`` commands (``send``) and a peripheral
``FrameCodec`` decodes them from the same bytes (``receive``): validation, CRC, fragmentation
bookkeeping and typed frames included. Named baseline, interleaved with the subject in the same
run (before and after): a hand-rolled ``struct.pack`` / ``struct.unpack_from`` of the same
header, payload and CRC-16 (``binascii.crc_hqx``) producing and checking the same bytes, with
no typed objects. The ratio says what the typed, validating codec costs over the bare bytes.

    .venv/bin/python benchmarks/codec.py [--quick]
"""

from __future__ import annotations

import argparse
import binascii
import struct
import time
from typing import Any

from wking_device.protocol import FrameCodec, Opcode, Role, SetVolume

_HEADER = struct.Struct("<BBBBH")
_CRC = struct.Struct("<H")
_SET_VOLUME = int(Opcode.SET_VOLUME)


def _ours(n: int) -> tuple[float, float]:
    central, peripheral = FrameCodec(Role.CENTRAL), FrameCodec(Role.PERIPHERAL)
    frames = [SetVolume(seq=i & 0xFF, volume=i % 101) for i in range(n)]
    wall, cpu = time.perf_counter(), time.process_time()
    for frame in frames:
        for chunk in central.send(frame):
            decoded = peripheral.receive(chunk)
            assert decoded, "a whole frame fits one fragment"
    return n / (time.perf_counter() - wall), (time.process_time() - cpu) / n * 1e6


def _baseline(n: int) -> float:
    wall = time.perf_counter()
    for i in range(n):
        # encode: 0xA5, version 1 | type 1 (command), seq, opcode SET_VOLUME, length, payload
        head = _HEADER.pack(0xA5, 0x11, i & 0xFF, _SET_VOLUME, 1) + bytes((i % 101,))
        data = head + _CRC.pack(binascii.crc_hqx(head[1:], 0xFFFF))
        # decode: fields, bounds, CRC
        start, vt, seq, opcode, length = _HEADER.unpack_from(data)
        payload = data[6 : 6 + length]
        (crc,) = _CRC.unpack_from(data, 6 + length)
        assert start == 0xA5
        assert crc == binascii.crc_hqx(data[1 : 6 + length], 0xFFFF)
        assert (vt, seq, opcode, payload[0]) == (0x11, i & 0xFF, _SET_VOLUME, i % 101)
    return n / (time.perf_counter() - wall)


def run(quick: bool = False) -> list[dict[str, Any]]:
    n = 20_000 if quick else 200_000
    central = FrameCodec(Role.CENTRAL)
    head = _HEADER.pack(0xA5, 0x11, 5, _SET_VOLUME, 1) + b"\x07"
    same = head + _CRC.pack(binascii.crc_hqx(head[1:], 0xFFFF))
    assert central.send(SetVolume(seq=5, volume=7)) == [same], "the baseline's bytes differ"
    _ours(1000)  # warm up
    before = _baseline(n)
    rate, cpu = _ours(n)
    after = _baseline(n)
    return [
        {
            "name": "codec.frames",
            "value": rate,
            "unit": "frames/s",
            "better": "higher",
            "baseline": "struct pack/unpack + crc_hqx of the same bytes",
            "baseline_values": [before, after],
            "budget": None,
            "cpu_us_per_item": cpu,
            "detail": f"{n:,} SetVolume frames encoded by a central codec and decoded by a "
            "peripheral one",
        }
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    for entry in run(parser.parse_args().quick):
        print(entry)
