"""Round trips of every frame type through the codec, in both roles."""

from __future__ import annotations

import pytest

from wking_device.errors import UsageError
from wking_device.protocol import (
    NEED_DATA,
    BatteryLevel,
    Button,
    ButtonAction,
    ButtonPressed,
    EqPreset,
    Frame,
    FrameCodec,
    GetInfo,
    GetState,
    InfoResult,
    LightMode,
    MalformedCommand,
    Opcode,
    Ping,
    PingResult,
    PoweringOff,
    PowerOff,
    PowerOffReason,
    PowerState,
    Response,
    Role,
    SetEq,
    SetLight,
    SetVolume,
    StateChanged,
    StateResult,
    Status,
    UnknownEvent,
    UnsupportedCommand,
    crc16,
    decode_frame,
    encode_frame,
)

INFO = InfoResult(
    model_code=2, firmware_version="2.1.0", hardware_version="C", serial_number="WK10-0001234"
)
STATE = StateResult(
    volume=35,
    eq=EqPreset.ROCK,
    light=LightMode.RAINBOW,
    power=PowerState.ON,
    battery=87,
    charging=True,
)

COMMANDS: list[Frame] = [
    GetInfo(seq=0),
    GetState(seq=1),
    Ping(seq=2, data=b"hello"),
    Ping(seq=3),
    SetVolume(seq=4, volume=0),
    SetVolume(seq=5, volume=100),
    SetEq(seq=6, preset=EqPreset.BASS_BOOST),
    SetLight(seq=7, mode=LightMode.MUSIC_SYNC),
    PowerOff(seq=255),
    UnsupportedCommand(seq=9, opcode=0x55, payload=b"\x01\x02"),
    MalformedCommand(seq=10, opcode=Opcode.SET_VOLUME, payload=b"\x01\x02", reason="x"),
]
PERIPHERAL_FRAMES: list[Frame] = [
    Response(seq=0, opcode=Opcode.GET_INFO, result=INFO),
    Response(seq=1, opcode=Opcode.GET_STATE, result=STATE),
    Response(seq=2, opcode=Opcode.PING, result=PingResult(data=b"hello")),
    Response(seq=3, opcode=Opcode.SET_VOLUME),
    Response(seq=4, opcode=Opcode.SET_LIGHT, status=Status.UNSUPPORTED),
    Response(seq=5, opcode=Opcode.GET_INFO, status=Status.BUSY),
    Response(seq=6, opcode=0x55, status=Status.UNSUPPORTED),
    StateChanged(seq=7, volume=50, eq=EqPreset.JAZZ, light=LightMode.OFF),
    BatteryLevel(seq=8, level=14, charging=False),
    ButtonPressed(seq=9, button=Button.VOLUME_UP, action=ButtonAction.LONG_PRESS),
    PoweringOff(seq=10, reason=PowerOffReason.LOW_BATTERY, delay_s=3),
    UnknownEvent(seq=11, code=0xF0, payload=b"future"),
]


@pytest.mark.parametrize("frame", COMMANDS, ids=repr)
def test_command_round_trip(frame: Frame) -> None:
    central = FrameCodec(Role.CENTRAL)
    peripheral = FrameCodec(Role.PERIPHERAL)
    received = peripheral.receive(b"".join(central.send(frame)))
    if isinstance(frame, MalformedCommand):
        # A malformed command decodes as malformed again, with the decoder's own reason.
        assert len(received) == 1
        got = received[0]
        assert isinstance(got, MalformedCommand)
        assert (got.seq, got.opcode, got.payload) == (frame.seq, frame.opcode, frame.payload)
        assert "1 bytes" in got.reason or "payload" in got.reason
    else:
        assert received == [frame]
    assert peripheral.next_event() is NEED_DATA


@pytest.mark.parametrize("frame", PERIPHERAL_FRAMES, ids=repr)
def test_peripheral_frame_round_trip(frame: Frame) -> None:
    central = FrameCodec(Role.CENTRAL)
    peripheral = FrameCodec(Role.PERIPHERAL)
    assert central.receive(b"".join(peripheral.send(frame))) == [frame]
    assert decode_frame(encode_frame(frame)) == frame


def test_known_wire_bytes() -> None:
    # The worked examples in docs/protocol.md.
    assert encode_frame(SetVolume(seq=0, volume=40)).hex(" ") == "a5 11 00 10 01 00 28 c9 d8"
    frame = encode_frame(GetState(seq=1))
    assert frame[:6] == bytes.fromhex("a5 11 01 02 00 00")
    assert frame[6:] == crc16(bytes.fromhex("11 01 02 00 00")).to_bytes(2, "little")


def test_crc_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize(
    "build",
    [
        lambda: SetVolume(seq=0, volume=101),
        lambda: SetVolume(seq=0, volume=-1),
        lambda: SetVolume(seq=0, volume=True),
        lambda: SetVolume(seq=256, volume=1),
        lambda: SetEq(seq=0, preset=99),
        lambda: SetLight(seq=0, mode="rainbow"),
        lambda: Ping(seq=0, data=b"x" * 512),
        lambda: Ping(seq=0, data="text"),
        lambda: Response(seq=0, opcode=Opcode.GET_STATE),
        lambda: Response(seq=0, opcode=Opcode.SET_VOLUME, result=STATE),
        lambda: Response(seq=0, opcode=Opcode.GET_STATE, status=Status.BUSY, result=STATE),
        lambda: Response(seq=0, opcode=Opcode.GET_INFO, result=STATE),
        lambda: Response(seq=0, opcode=0x80),
        lambda: InfoResult(
            model_code=1, firmware_version="1" * 33, hardware_version="A", serial_number="1"
        ),
        lambda: InfoResult(
            model_code=1, firmware_version="1\n", hardware_version="A", serial_number="1"
        ),
        lambda: StateResult(volume=1, eq=0, light=0, power=0, battery=5, charging=False),
        lambda: BatteryLevel(seq=0, level=101),
        lambda: UnknownEvent(seq=0, code=0x81),
        lambda: UnknownEvent(seq=0, code=0x10),
        lambda: UnsupportedCommand(seq=0, opcode=Opcode.PING),
    ],
)
def test_invalid_construction_raises_usage_error(build: object) -> None:
    with pytest.raises(UsageError):
        build()  # type: ignore[operator]


def test_ints_are_coerced_to_enums() -> None:
    frame = SetEq(seq=0, preset=3)  # type: ignore[arg-type]
    assert frame.preset is EqPreset.POP
    response = Response(seq=0, opcode=2, result=STATE)
    assert response.opcode is Opcode.GET_STATE
    assert response.ok
