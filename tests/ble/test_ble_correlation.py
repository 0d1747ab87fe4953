"""Request/response correlation of the vendor channel: sequence-number wrap and stray answers."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from wking_device.ble import Speaker
from wking_device.errors import MalformedResponse
from wking_device.models import OperationKind, Outcome
from wking_device.protocol import FrameCodec, InfoResult, Opcode, Response, Role
from wking_device.sim import SimWorld, SpeakerSpec

if TYPE_CHECKING:
    from tests.ble.conftest import Recorder

    from wking_device.sim import SimSpeaker


async def _wait_until(predicate: object, within: float = 5.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polls the simulator's state, which has no event
            await asyncio.sleep(0.005)


_LATE = 5.0
"""Seconds the simulated speaker takes to answer the abandoned command (and the next one)."""


def _world() -> SimWorld:
    return SimWorld([SpeakerSpec.for_index(1, adv_interval_ms=20)])


async def test_a_late_answer_is_not_taken_for_a_newer_command_after_the_seq_wraps(
    recorder: Recorder,
) -> None:
    async with (
        _world() as world,
        Speaker(
            world.speakers[0].address,
            backend=world.backend,
            events=recorder.bus,
            command_timeout=3 * _LATE,  # GET_STATE below is answered after _LATE
        ) as speaker,
    ):
        sim = world.speakers[0]
        # GET_INFO is answered late; its caller gives up before the answer comes. Late enough
        # for the 255 commands below on a loaded machine (they outlasted 1 s in a CI run)
        sim.faults.response_delay_s = _LATE
        heard = sim.state.commands
        loop = asyncio.get_running_loop()
        asked = loop.time()
        abandoned = asyncio.create_task(speaker.get_info())
        await _wait_until(lambda: sim.state.commands > heard)
        abandoned.cancel()
        with pytest.raises(asyncio.CancelledError):
            await abandoned
        # 255 more commands: the one-byte seq wraps back to GET_INFO's number (15 rounds of 17
        # at once: done before the late answer)...
        sim.faults.response_delay_s = 0.0
        for _ in range(15):
            await asyncio.gather(*(speaker.ping() for _ in range(17)))
        wrapped = loop.time()
        assert wrapped - asked < _LATE, "the seq wrapped after the late answer came"
        # ...and the next command is in flight when the late GET_INFO answer arrives.
        sim.faults.response_delay_s = _LATE
        state = await speaker.get_state()
        assert state.volume == sim.state.volume
    commands = recorder.of(OperationKind.COMMAND)
    (info,) = [e for e in commands if e.detail["command"] == "GET_INFO"]
    (get_state,) = [e for e in commands if e.detail["command"] == "GET_STATE"]
    assert info.outcome is Outcome.CANCELLED
    assert get_state.outcome is Outcome.OK
    # the unanswered seq stayed out of use
    assert get_state.detail["seq"] != info.detail["seq"]


async def _notify_raw(sim: SimSpeaker, data: bytes) -> None:
    """Send bytes on the vendor notify characteristic, as a misbehaving firmware would."""
    for connection in list(sim.device.connections.values()):
        await sim.device.notify_subscriber(connection, sim._notify_char, data)


async def test_an_answer_for_another_opcode_is_a_typed_error_not_a_crash() -> None:
    async with (
        _world() as world,
        Speaker(world.speakers[0].address, backend=world.backend, command_timeout=5.0) as speaker,
    ):
        sim = world.speakers[0]
        sim.faults.response_delay_s = 3.0  # the real answer comes long after the stray one
        heard = sim.state.commands
        waiting = asyncio.create_task(speaker.get_state())
        await _wait_until(lambda: sim.state.commands > heard)
        # A fresh session's first command carries seq 0; answer it with a GET_INFO result.
        info = InfoResult(
            model_code=1, firmware_version="1", hardware_version="A", serial_number="S"
        )
        stray = Response(seq=0, opcode=Opcode.GET_INFO, result=info)
        for fragment in FrameCodec(Role.PERIPHERAL, mtu=247).send(stray):
            await _notify_raw(sim, fragment)
        with pytest.raises(MalformedResponse) as caught:
            await waiting
        assert "GET_INFO" in str(caught.value)
        # the session stays usable
        sim.faults.response_delay_s = 0.0
        assert await speaker.ping(b"ok") >= 0
