"""FrameCodec: fragmentation over the ATT MTU, role rules, the error state and bounded memory."""

from __future__ import annotations

import pytest

from wking_device.errors import ChecksumError, CodecStateError, FrameError, UsageError
from wking_device.protocol import (
    MAX_FRAME_SIZE,
    MAX_PAYLOAD,
    MAX_PING_DATA,
    NEED_DATA,
    CodecState,
    FrameCodec,
    GetState,
    InfoResult,
    Opcode,
    Ping,
    PingResult,
    Response,
    Role,
    SetVolume,
    StateResult,
    crc16,
    decode_frame,
    encode_frame,
)

MTUS = [23, 27, 185, 247, 517]


@pytest.mark.parametrize("mtu", MTUS)
@pytest.mark.parametrize("size", [0, 1, 11, 12, 13, 100, 300, MAX_PING_DATA])
def test_fragments_fit_the_mtu_and_reassemble(mtu: int, size: int) -> None:
    central = FrameCodec(Role.CENTRAL, mtu=mtu)
    peripheral = FrameCodec(Role.PERIPHERAL, mtu=mtu)
    command = Ping(seq=central.next_seq(), data=(bytes(range(256)) * 2)[:size])
    fragments = central.send(command)
    wire = encode_frame(command)
    assert b"".join(fragments) == wire
    assert all(1 <= len(f) <= mtu - 3 for f in fragments)
    assert len(fragments) == -(-len(wire) // (mtu - 3))
    # Feed one ATT write at a time: nothing is complete until the last fragment arrives.
    for fragment in fragments[:-1]:
        assert peripheral.receive(fragment) == []
    assert peripheral.receive(fragments[-1]) == [command]
    # The answer comes back the same way.
    response = Response(seq=command.seq, opcode=Opcode.PING, result=PingResult(data=command.data))
    received = []
    for fragment in peripheral.send(response):
        received += central.receive(fragment)
    assert received == [response]


def test_mtu_change_mid_stream() -> None:
    central = FrameCodec(Role.CENTRAL)  # default 23
    peripheral = FrameCodec(Role.PERIPHERAL)
    first = Ping(seq=0, data=b"a" * 100)
    second = Ping(seq=1, data=b"b" * 400)
    fragments_23 = central.send(first)
    assert max(map(len, fragments_23)) == 20
    # Half of the first frame arrives, then the link renegotiates MTU 247 (the receive side
    # reassembles a byte stream, so fragment size changes do not matter to it).
    half = len(fragments_23) // 2
    got = []
    for fragment in fragments_23[:half]:
        got += peripheral.receive(fragment)
    central.mtu = 247
    peripheral.mtu = 247
    fragments_247 = central.send(second)
    assert max(map(len, fragments_247)) == 244
    for fragment in fragments_23[half:] + fragments_247:
        got += peripheral.receive(fragment)
    assert got == [first, second]
    # And down again to 27 for the answer.
    peripheral.mtu = 27
    answer = Response(seq=1, opcode=Opcode.PING, result=PingResult(data=second.data))
    assert all(len(f) <= 24 for f in peripheral.send(answer))


@pytest.mark.parametrize("mtu", [0, 22, 518, 23.5, True, "185"])
def test_invalid_mtu_is_refused(mtu: object) -> None:
    with pytest.raises(UsageError, match="MTU"):
        FrameCodec(Role.CENTRAL, mtu=mtu)  # type: ignore[arg-type]
    codec = FrameCodec(Role.CENTRAL)
    with pytest.raises(UsageError):
        codec.mtu = mtu  # type: ignore[assignment]
    assert codec.mtu == 23


def test_next_event_returns_need_data_until_complete() -> None:
    codec = FrameCodec(Role.PERIPHERAL)
    wire = encode_frame(SetVolume(seq=9, volume=33))
    for i in range(len(wire) - 1):
        codec.receive_data(wire[i : i + 1])
        assert codec.next_event() is NEED_DATA
    codec.receive_data(wire[-1:])
    assert codec.next_event() == SetVolume(seq=9, volume=33)
    assert codec.next_event() is NEED_DATA
    assert codec.buffered == 0


def test_several_frames_in_one_write() -> None:
    codec = FrameCodec(Role.PERIPHERAL)
    frames = [SetVolume(seq=i, volume=i) for i in range(10)]
    assert codec.receive(b"".join(map(encode_frame, frames))) == frames


def test_seq_wraps() -> None:
    codec = FrameCodec(Role.CENTRAL)
    seqs = [codec.next_seq() for _ in range(258)]
    assert seqs[:3] == [0, 1, 2]
    assert seqs[255:] == [255, 0, 1]


def test_central_cannot_send_a_response_and_peripheral_cannot_send_a_command() -> None:
    central = FrameCodec(Role.CENTRAL)
    with pytest.raises(CodecStateError, match="central cannot send a response"):
        central.send(Response(seq=0, opcode=Opcode.SET_VOLUME))
    peripheral = FrameCodec(Role.PERIPHERAL)
    with pytest.raises(CodecStateError, match="peripheral cannot send a command"):
        peripheral.send(GetState(seq=0))
    with pytest.raises(UsageError, match="not a concrete"):
        central.send("GetState")  # type: ignore[arg-type]


def test_receiving_the_wrong_frame_type_is_a_frame_error() -> None:
    central = FrameCodec(Role.CENTRAL)
    with pytest.raises(FrameError, match="central only receives"):
        central.receive(encode_frame(GetState(seq=0)))
    peripheral = FrameCodec(Role.PERIPHERAL)
    # Rejected from the header alone, before the payload arrives.
    with pytest.raises(FrameError, match="peripheral only receives"):
        peripheral.receive(encode_frame(Response(seq=0, opcode=Opcode.SET_VOLUME))[:6])


def test_error_state_refuses_everything_until_reset() -> None:
    codec = FrameCodec(Role.PERIPHERAL)
    wire = bytearray(encode_frame(SetVolume(seq=1, volume=5)))
    wire[-1] ^= 0xFF
    with pytest.raises(ChecksumError):
        codec.receive(bytes(wire))
    assert codec.state is CodecState.ERROR
    assert codec.error is not None
    assert "CRC" in codec.error
    for call in (
        lambda: codec.receive_data(b"\xa5"),
        codec.next_event,
        lambda: codec.send(Response(seq=1, opcode=Opcode.SET_VOLUME)),
    ):
        with pytest.raises(CodecStateError, match="ERROR state after: frame CRC"):
            call()
    codec.mtu = 185  # allowed: a reconnect renegotiates the MTU before reset()
    codec.reset()
    assert codec.state is CodecState.READY
    assert codec.buffered == 0
    assert codec.receive(encode_frame(SetVolume(seq=2, volume=6))) == [SetVolume(seq=2, volume=6)]


def test_oversized_length_fails_on_the_header() -> None:
    header = bytes([0xA5, 0x12, 0, 0x01]) + (MAX_PAYLOAD + 1).to_bytes(2, "little")
    codec = FrameCodec(Role.CENTRAL)
    with pytest.raises(FrameError, match="exceeds the maximum"):
        codec.receive(header)


def test_receive_buffer_is_bounded() -> None:
    codec = FrameCodec(Role.PERIPHERAL, max_buffer=MAX_FRAME_SIZE)
    codec.receive_data(encode_frame(SetVolume(seq=0, volume=1)))
    with pytest.raises(FrameError, match="receive buffer"):
        codec.receive_data(bytes(MAX_FRAME_SIZE))
    assert codec.state is CodecState.ERROR
    with pytest.raises(UsageError):
        FrameCodec(Role.PERIPHERAL, max_buffer=10)


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (b"\x00", FrameError, "start byte"),
        (b"\xa5\x21", FrameError, "version 2"),
        (b"\xa5\x14", FrameError, "frame type"),
        (b"\xa5\x12\x00\x85\x00\x00", FrameError, "not valid for frame type RESPONSE"),
        (b"\xa5\x13\x00\x05\x00\x00", FrameError, "not valid for frame type EVENT"),
    ],
)
def test_header_errors(data: bytes, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        FrameCodec(Role.CENTRAL).receive(data)


def test_decode_frame_checks_the_whole_frame() -> None:
    wire = encode_frame(SetVolume(seq=3, volume=44))
    assert decode_frame(wire) == SetVolume(seq=3, volume=44)
    with pytest.raises(FrameError, match="at least"):
        decode_frame(wire[:5])
    with pytest.raises(FrameError, match="header says"):
        decode_frame(wire + b"\x00")
    with pytest.raises(ChecksumError):
        decode_frame(wire[:-1] + bytes([wire[-1] ^ 1]))


def test_malformed_response_payloads_are_frame_errors() -> None:
    def framed(ftype: int, code: int, payload: bytes) -> bytes:
        body = bytes([0x10 | ftype, 0, code]) + len(payload).to_bytes(2, "little") + payload
        return b"\xa5" + body + crc16(body).to_bytes(2, "little")

    cases = [
        (framed(2, 0x02, b""), "status byte"),
        (framed(2, 0x02, b"\x77"), "unknown response status"),
        (framed(2, 0x02, b"\x00\x01\x02"), "state result"),
        (framed(2, 0x10, b"\x00\x01"), "has a body"),
        (framed(2, 0x01, b"\x00\x02\x05abc"), "runs past"),
        (framed(2, 0x01, b"\x00\x02\x01\xff\x00\x00"), "malformed info result.*utf-8"),
        (framed(3, 0x81, b"\x65\x00\x00"), "volume"),
        (framed(3, 0x82, b"\x10\x02"), "charging flag"),
        (framed(3, 0x83, b"\x09\x00"), "malformed event"),
    ]
    for wire, match in cases:
        with pytest.raises(FrameError, match=match):
            FrameCodec(Role.CENTRAL).receive(wire)


def test_result_parsers_raise_only_frame_errors() -> None:
    for body in (b"", b"\x01\x01\xff\x00\x00", b"\x01\x01\x07\x00\x00", b"\x01\x00\x00\x00\x00"):
        with pytest.raises(FrameError):
            InfoResult.from_bytes(body)
    for body in (b"", b"\x65\x00\x00\x01\x00\x00", b"\x00\x09\x00\x01\x00\x00"):
        with pytest.raises(FrameError):
            StateResult.from_bytes(body)
    with pytest.raises(FrameError):
        PingResult.from_bytes(bytes(MAX_PING_DATA + 1))


def test_codec_argument_misuse_is_typed() -> None:
    with pytest.raises(UsageError, match="role"):
        FrameCodec("speaker")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="bytes"):
        FrameCodec(Role.CENTRAL).receive_data("a5")  # type: ignore[arg-type]
