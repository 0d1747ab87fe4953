"""receive_fragment: resynchronisation on fragment boundaries (issue 10, defect 2).

The rule is the one docs/protocol.md states under "Resynchronisation": a frame that cannot be
completed is dropped and reported with the header it had, and every intact frame after it is
still decoded. Before this, one truncated answer left bytes in the buffer that the next good
answer completed, which then failed its CRC (and the next, and the next).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.protocol.test_protocol_properties import PROPS, mtus, responses

from wking_device.errors import CodecStateError, FrameError, UsageError
from wking_device.protocol import (
    BrokenFrame,
    CodecState,
    Frame,
    FrameCodec,
    FrameType,
    GetState,
    InfoResult,
    Opcode,
    PingResult,
    Response,
    Role,
    Status,
    encode_frame,
)

INFO = Response(
    seq=1,
    opcode=Opcode.GET_INFO,
    result=InfoResult(
        model_code=2, firmware_version="2.1.0", hardware_version="C", serial_number="WK10-0001234"
    ),
)
BUSY = Response(seq=2, opcode=Opcode.GET_STATE, status=Status.BUSY)


def feed(codec: FrameCodec, fragments: list[bytes]) -> list[Frame | BrokenFrame]:
    out: list[Frame | BrokenFrame] = []
    for fragment in fragments:
        out.extend(codec.receive_fragment(fragment))
    return out


def fragments_of(frame: Frame, mtu: int) -> list[bytes]:
    return FrameCodec(Role.PERIPHERAL, mtu=mtu).send(frame)


def test_intact_fragments_give_the_frames() -> None:
    central = FrameCodec(Role.CENTRAL)
    assert feed(central, fragments_of(INFO, 23) + fragments_of(BUSY, 23)) == [INFO, BUSY]
    assert central.buffered == 0


def test_stream_mode_poisons_the_next_answer_fragment_mode_does_not() -> None:
    truncated = encode_frame(INFO)[:-3]
    fragments = [truncated[:20], truncated[20:], *fragments_of(BUSY, 23)]
    central = FrameCodec(Role.CENTRAL)
    results = feed(central, fragments)
    assert results[1:] == [BUSY]
    broken = results[0]
    assert isinstance(broken, BrokenFrame)
    assert (broken.frame_type, broken.seq, broken.code) == (FrameType.RESPONSE, 1, 1)
    assert broken.size == len(truncated)
    assert "cut short" in broken.reason
    assert central.state is CodecState.READY


def test_a_fragment_lost_and_a_next_frame_shorter_than_the_gap() -> None:
    # The next frame (9 bytes) fits in the gap (11 bytes): it is held as a continuation until
    # a fragment arrives that cannot continue the frame; then every held fragment that begins
    # with a valid header is taken again as a frame start.
    whole = fragments_of(INFO, 23)
    later = dataclasses.replace(BUSY, seq=3)
    results = feed(
        FrameCodec(Role.CENTRAL), [whole[0], *fragments_of(BUSY, 23), encode_frame(later)]
    )
    assert isinstance(results[0], BrokenFrame)
    assert results[0].seq == 1
    assert results[1:] == [BUSY, later]


def test_a_next_frame_that_exactly_fills_the_gap_fails_the_crc_and_is_kept() -> None:
    whole = fragments_of(INFO, 23)
    filler = Response(seq=3, opcode=Opcode.PING, result=PingResult(data=b"ab"))  # 11 bytes
    assert len(encode_frame(filler)) == len(whole[1])
    results = feed(FrameCodec(Role.CENTRAL), [whole[0], encode_frame(filler)])
    assert isinstance(results[0], BrokenFrame)
    assert results[0].seq == 1
    assert results[1:] == [filler]


def test_noise_where_a_frame_must_start_is_dropped_without_a_header() -> None:
    central = FrameCodec(Role.CENTRAL)
    results = feed(central, [b"\x00\x01\x02", *fragments_of(BUSY, 23)])
    assert results[1:] == [BUSY]
    assert isinstance(results[0], BrokenFrame)
    assert results[0].seq is None
    assert results[0].size == 3


def test_a_frame_type_this_role_never_receives_is_dropped() -> None:
    command = FrameCodec(Role.CENTRAL).send(GetState(seq=9))
    results = feed(FrameCodec(Role.CENTRAL), [*command, *fragments_of(BUSY, 23)])
    assert isinstance(results[0], BrokenFrame)
    assert results[1:] == [BUSY]


def test_drop_partial_reports_the_frame_in_progress() -> None:
    central = FrameCodec(Role.CENTRAL)
    assert central.drop_partial() == []
    assert feed(central, [fragments_of(INFO, 23)[0], encode_frame(BUSY)]) == []
    assert central.partial_header == (FrameType.RESPONSE, 1, 1)
    broken, *rest = central.drop_partial("timed out")
    assert isinstance(broken, BrokenFrame)
    assert (broken.seq, broken.reason) == (1, "timed out")
    assert rest == [BUSY]  # held as a continuation, recovered by the replay
    assert central.buffered == 0
    assert central.partial_header is None


def test_mixing_with_receive_data_is_refused_and_error_state_is_kept() -> None:
    central = FrameCodec(Role.CENTRAL)
    central.receive_data(encode_frame(INFO)[:5])
    with pytest.raises(UsageError):
        central.receive_fragment(b"\xa5")
    central.reset()
    central.receive_data(b"\x00")
    with pytest.raises(FrameError):
        central.next_event()
    with pytest.raises(CodecStateError):
        central.receive_fragment(b"\xa5")
    with pytest.raises(UsageError):
        FrameCodec(Role.CENTRAL).receive_fragment("text")  # type: ignore[arg-type]


def _can_start(fragment: bytes) -> bool:
    return FrameCodec(Role.CENTRAL)._start_problem(fragment) is None


@PROPS
@given(
    frames=st.lists(responses, min_size=1, max_size=8),
    mtu=mtus,
    damage=st.lists(st.tuples(st.booleans(), st.integers(1, 600)), min_size=8, max_size=8),
)
def test_only_damaged_frames_are_lost(
    frames: list[Frame], mtu: int, damage: list[tuple[bool, int]]
) -> None:
    # Each frame gets its own seq; a damaged frame loses 1..len-7 bytes from its end (its
    # header survives). Intact frames must all come out, damaged ones must all be reported.
    frames = [dataclasses.replace(f, seq=i) for i, f in enumerate(frames)]
    size = mtu - 3
    fragments: list[bytes] = []
    damaged: set[int] = set()
    for frame, (cut, amount) in zip(frames, damage, strict=False):
        data = encode_frame(frame)
        if cut:
            data = data[: max(6, len(data) - amount)]
            damaged.add(frame.seq)
        parts = [data[i : i + size] for i in range(0, len(data), size)]
        # The stated residual risk: a continuation fragment that looks like a frame start.
        if any(_can_start(p) for p in parts[1:]):
            return
        fragments.extend(parts)
    central = FrameCodec(Role.CENTRAL, mtu=mtu)
    results = feed(central, fragments)
    while central.buffered:  # the commands' timeouts
        results.extend(central.drop_partial())
    assert [r for r in results if isinstance(r, Frame)] == [
        f for f in frames if f.seq not in damaged
    ]
    reported = {r.seq for r in results if isinstance(r, BrokenFrame)}
    assert reported == damaged
    assert central.buffered == 0
    assert central.state is CodecState.READY


@PROPS
@given(data=st.lists(st.binary(max_size=60), max_size=20))
def test_any_fragments_give_frames_or_reports_never_an_exception(data: list[bytes]) -> None:
    for role in Role:
        codec = FrameCodec(role)
        results = feed(codec, data)
        assert all(isinstance(r, Frame | BrokenFrame) for r in results)
        assert codec.state is CodecState.READY
        assert codec.buffered <= 520
