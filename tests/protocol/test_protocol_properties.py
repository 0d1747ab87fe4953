"""Property tests (hypothesis) and a bounded fuzz run of the wking-v1 codec."""

from __future__ import annotations

import itertools
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wking_device.errors import ProtocolError
from wking_device.protocol import (
    MAX_PING_DATA,
    MAX_TEXT_BYTES,
    NEED_DATA,
    BatteryLevel,
    Button,
    ButtonAction,
    ButtonPressed,
    CodecState,
    EqPreset,
    EventCode,
    Frame,
    FrameCodec,
    GetInfo,
    GetState,
    InfoResult,
    LightMode,
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
    encode_frame,
)

seqs = st.integers(0, 255)
volumes = st.integers(0, 100)
texts = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), max_size=MAX_TEXT_BYTES
).filter(lambda s: len(s.encode()) <= MAX_TEXT_BYTES and s.isprintable())
ping_data = st.binary(max_size=MAX_PING_DATA)
unknown_opcodes = st.integers(0, 0x7F).filter(lambda c: c not in set(Opcode))
unknown_events = st.integers(0x80, 0xFF).filter(lambda c: c not in set(EventCode))

commands: st.SearchStrategy[Frame] = st.one_of(
    st.builds(GetInfo, seq=seqs),
    st.builds(GetState, seq=seqs),
    st.builds(PowerOff, seq=seqs),
    st.builds(Ping, seq=seqs, data=ping_data),
    st.builds(SetVolume, seq=seqs, volume=volumes),
    st.builds(SetEq, seq=seqs, preset=st.sampled_from(EqPreset)),
    st.builds(SetLight, seq=seqs, mode=st.sampled_from(LightMode)),
    st.builds(UnsupportedCommand, seq=seqs, opcode=unknown_opcodes, payload=st.binary(max_size=64)),
)
infos = st.builds(
    InfoResult,
    model_code=st.integers(0, 255),
    firmware_version=texts,
    hardware_version=texts,
    serial_number=texts,
)
states = st.builds(
    StateResult,
    volume=volumes,
    eq=st.sampled_from(EqPreset),
    light=st.sampled_from(LightMode),
    power=st.sampled_from(PowerState),
    battery=volumes,
    charging=st.booleans(),
)
failures = st.sampled_from([s for s in Status if s is not Status.OK])
responses: st.SearchStrategy[Frame] = st.one_of(
    st.builds(Response, seq=seqs, opcode=st.just(Opcode.GET_INFO), result=infos),
    st.builds(Response, seq=seqs, opcode=st.just(Opcode.GET_STATE), result=states),
    st.builds(
        Response,
        seq=seqs,
        opcode=st.just(Opcode.PING),
        result=st.builds(PingResult, data=ping_data),
    ),
    st.builds(
        Response,
        seq=seqs,
        opcode=st.sampled_from(
            [Opcode.SET_VOLUME, Opcode.SET_EQ, Opcode.SET_LIGHT, Opcode.POWER_OFF]
        ),
    ),
    st.builds(
        Response,
        seq=seqs,
        opcode=st.one_of(st.sampled_from(Opcode), unknown_opcodes),
        status=failures,
    ),
)
events: st.SearchStrategy[Frame] = st.one_of(
    st.builds(
        StateChanged,
        seq=seqs,
        volume=volumes,
        eq=st.sampled_from(EqPreset),
        light=st.sampled_from(LightMode),
    ),
    st.builds(BatteryLevel, seq=seqs, level=volumes, charging=st.booleans()),
    st.builds(
        ButtonPressed,
        seq=seqs,
        button=st.sampled_from(Button),
        action=st.sampled_from(ButtonAction),
    ),
    st.builds(
        PoweringOff,
        seq=seqs,
        reason=st.sampled_from(PowerOffReason),
        delay_s=st.integers(0, 255),
    ),
    st.builds(UnknownEvent, seq=seqs, code=unknown_events, payload=st.binary(max_size=64)),
)
mtus = st.sampled_from([23, 27, 185, 247, 517]) | st.integers(23, 517)
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def drain(codec: FrameCodec, chunks: list[bytes]) -> list[Frame]:
    frames: list[Frame] = []
    for chunk in chunks:
        frames.extend(codec.receive(chunk))
    return frames


@PROPS
@given(frames=st.lists(commands, min_size=1, max_size=8), mtu=mtus)
def test_commands_encode_decode_identity(frames: list[Frame], mtu: int) -> None:
    central = FrameCodec(Role.CENTRAL, mtu=mtu)
    peripheral = FrameCodec(Role.PERIPHERAL)
    fragments = central.send_many(frames)
    assert all(len(f) <= mtu - 3 for f in fragments)
    assert drain(peripheral, fragments) == frames
    assert peripheral.buffered == 0


@PROPS
@given(frames=st.lists(responses | events, min_size=1, max_size=8), mtu=mtus)
def test_responses_and_events_encode_decode_identity(frames: list[Frame], mtu: int) -> None:
    peripheral = FrameCodec(Role.PERIPHERAL, mtu=mtu)
    central = FrameCodec(Role.CENTRAL)
    assert drain(central, peripheral.send_many(frames)) == frames


@PROPS
@given(
    frames=st.lists(responses | events, min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_any_split_of_the_stream_gives_the_same_frames(
    frames: list[Frame], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    central = FrameCodec(Role.CENTRAL)
    assert drain(central, split_at(stream, cuts)) == frames


@PROPS
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 1000), max_size=8))
def test_random_bytes_give_frames_or_a_typed_error(data: bytes, cuts: list[int]) -> None:
    for role in Role:
        codec = FrameCodec(role)
        try:
            drain(codec, split_at(data, cuts))
        except ProtocolError:
            assert codec.state is CodecState.ERROR
        else:
            assert codec.state is CodecState.READY
            assert codec.buffered < len(data) + 1


def mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        choice = rng.random()
        if choice < 0.5 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif choice < 0.7 and buf:
            del buf[rng.randrange(len(buf))]
        elif choice < 0.85:
            buf.insert(rng.randint(0, len(buf)), rng.randrange(256))
        else:
            buf = buf[: rng.randint(0, len(buf))]
    return bytes(buf)


def fix_crc(data: bytes) -> bytes:
    """Recompute the trailing CRC so a mutation reaches the payload decoder."""
    if len(data) < 3:
        return data
    return data[:-2] + crc16(data[1:-2]).to_bytes(2, "little")


PERIPHERAL_SEEDS = [
    Response(
        seq=1,
        opcode=Opcode.GET_INFO,
        result=InfoResult(
            model_code=3, firmware_version="3.0.4", hardware_version="B", serial_number="S1"
        ),
    ),
    Response(
        seq=2,
        opcode=Opcode.GET_STATE,
        result=StateResult(
            volume=10,
            eq=EqPreset.ROCK,
            light=LightMode.BREATHE,
            power=PowerState.ON,
            battery=50,
            charging=False,
        ),
    ),
    Response(seq=3, opcode=Opcode.SET_EQ, status=Status.BUSY),
    StateChanged(seq=4, volume=4, eq=EqPreset.POP, light=LightMode.OFF),
    BatteryLevel(seq=5, level=20, charging=True),
    ButtonPressed(seq=6, button=Button.POWER),
    PoweringOff(seq=7, reason=PowerOffReason.BUTTON, delay_s=2),
]
CENTRAL_SEEDS = [
    SetVolume(seq=8, volume=7),
    SetEq(seq=9, preset=EqPreset.VOCAL),
    SetLight(seq=10, mode=LightMode.STROBE),
    Ping(seq=11, data=b"abc"),
    GetInfo(seq=12),
    PowerOff(seq=13),
]


def test_fuzz_mutated_frames_and_noise() -> None:
    """10,000 bounded iterations: a valid frame, then a mutated frame or noise, in random pieces."""
    rng = random.Random(0x5EED)
    seeds = {
        Role.CENTRAL: [encode_frame(f) for f in PERIPHERAL_SEEDS],
        Role.PERIPHERAL: [encode_frame(f) for f in CENTRAL_SEEDS],
    }
    outcomes = {"frames": 0, "errors": 0, "need_data": 0, "payload_fuzzed": 0}
    for i in range(10_000):
        role = Role.CENTRAL if i % 2 else Role.PERIPHERAL
        valid = rng.choice(seeds[role])
        if i % 5 == 0:
            tail = rng.randbytes(rng.randint(0, 40))
        else:
            tail = mutate(rng, rng.choice(seeds[role]))
            if rng.random() < 0.5:
                tail = fix_crc(tail)
                outcomes["payload_fuzzed"] += 1
        data = valid + tail
        codec = FrameCodec(role, mtu=rng.choice([23, 27, 185]))
        try:
            pos = 0
            while pos < len(data):
                step = rng.randint(1, 24)
                frames = codec.receive(data[pos : pos + step])
                assert all(isinstance(f, Frame) for f in frames)
                outcomes["frames"] += len(frames)
                pos += step
            if codec.buffered:
                assert codec.next_event() is NEED_DATA
                outcomes["need_data"] += 1
        except ProtocolError:
            outcomes["errors"] += 1
            assert codec.state is CodecState.ERROR
    # Each path was exercised: decoded frames, rejected bytes, incomplete frames.
    assert all(count > 100 for count in outcomes.values()), outcomes
