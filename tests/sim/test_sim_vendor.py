"""The speaker's command handling, directly (no radio): every command gets an answer."""

from __future__ import annotations

from wking_device.protocol import (
    EqPreset,
    GetInfo,
    GetState,
    MalformedCommand,
    Opcode,
    PowerOff,
    PowerState,
    Response,
    SetEq,
    SetVolume,
    StateChanged,
    Status,
    UnsupportedCommand,
)
from wking_device.sim import SpeakerState
from wking_device.sim._vendor import VendorHandler


def _handler() -> VendorHandler:
    return VendorHandler(
        SpeakerState(volume=10), model_code=2, firmware="2.1.0", hardware="C", serial="WK1"
    )


def test_setters_answer_and_announce_only_real_changes() -> None:
    handler = _handler()
    response, event = handler.handle(SetEq(seq=4, preset=EqPreset.ROCK))
    assert isinstance(response, Response)
    assert (response.seq, response.status) == (4, Status.OK)
    assert isinstance(event, StateChanged)
    assert event.eq is EqPreset.ROCK
    assert handler.handle(SetVolume(seq=5, volume=10)) == [
        Response(seq=5, opcode=Opcode.SET_VOLUME)
    ]  # unchanged: no event


def test_queries_unknown_and_malformed_commands() -> None:
    handler = _handler()
    (info,) = handler.handle(GetInfo(seq=1))
    assert info.result.serial_number == "WK1"
    (state,) = handler.handle(GetState(seq=2))
    assert state.result.volume == 10
    (unknown,) = handler.handle(UnsupportedCommand(seq=3, opcode=0x7E))
    assert unknown.status is Status.UNSUPPORTED
    (bad,) = handler.handle(MalformedCommand(seq=4, opcode=Opcode.SET_VOLUME, payload=b"\xff"))
    assert bad.status is Status.BAD_PARAM
    assert handler.state.commands == 4


def test_after_power_off_setters_are_busy() -> None:
    handler = _handler()
    response, event = handler.handle(PowerOff(seq=1))
    assert response.status is Status.OK
    assert type(event).__name__ == "PoweringOff"
    assert handler.state.power is PowerState.SHUTTING_DOWN
    (busy,) = handler.handle(SetVolume(seq=2, volume=50))
    assert busy.status is Status.BUSY
    assert handler.state.volume == 10
