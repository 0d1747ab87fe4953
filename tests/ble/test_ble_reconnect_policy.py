"""The reconnect policy: a speaker that went away fails fast, within one total bound, typed.

Simulated speakers go away through the simulator's own controls (out of range, powered off) and
the session is driven through its public API only. The default connect settings are kept (three
attempts of 10 s): before the policy, a gone speaker held the next operation for ~31 s and raised
``ConnectionFailed``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from wking_device import (
    BluetoothReason,
    ConnectionFailed,
    ConnectionLimiter,
    DeviceDisconnected,
    DeviceNotFound,
    Speaker,
    UsageError,
)
from wking_device.ble import DEFAULT_RECONNECT_TIMEOUT
from wking_device.sim import SimWorld

_MARGIN = 3.0
"""Slack over the bound for a loaded machine: a failure takes the bound, not 30 s."""


async def _wait_until(predicate: object, within: float = 5.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polls the session's state, which has no event
            await asyncio.sleep(0.005)


async def test_a_speaker_out_of_range_fails_the_next_operation_fast_with_device_disconnected() -> (
    None
):
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        async with Speaker(
            sim.address, backend=world.backend, auto_reconnect=True, reconnect_timeout=2.0
        ) as speaker:
            sim.faults.in_range = False
            await _wait_until(lambda: not speaker.is_connected)
            async with asyncio.timeout(2.0 + _MARGIN):
                with pytest.raises(DeviceDisconnected) as caught:
                    await speaker.set_volume(10)
            assert not isinstance(caught.value, ConnectionFailed)
            assert caught.value.reason is BluetoothReason.NOT_FOUND
            assert isinstance(caught.value.__cause__, DeviceNotFound)
            assert "went away" in caught.value.message
            assert speaker.connections == 1


async def test_a_powered_off_speaker_fails_reconnect_fast_with_device_disconnected() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        async with Speaker(
            sim.address, backend=world.backend, auto_reconnect=True, reconnect_timeout=2.0
        ) as speaker:
            await speaker.power_off()
            await _wait_until(lambda: not speaker.is_connected)
            async with asyncio.timeout(2.0 + _MARGIN):
                with pytest.raises(DeviceDisconnected):
                    await speaker.read_info()
            # an explicit reconnect follows the same policy
            async with asyncio.timeout(2.0 + _MARGIN):
                with pytest.raises(DeviceDisconnected):
                    await speaker.reconnect()
            # back on: the next operation reconnects
            await sim.power_on()
            await speaker.set_volume(42)
            assert sim.state.volume == 42
            assert speaker.connections == 2


async def test_a_speaker_that_advertises_but_refuses_is_bounded_by_the_total_deadline() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        async with Speaker(
            sim.address, backend=world.backend, auto_reconnect=True, reconnect_timeout=1.5
        ) as speaker:
            sim.faults.in_range = False
            await _wait_until(lambda: not speaker.is_connected)
            sim.faults.connectable = False  # seen advertising, but every attempt times out
            sim.faults.in_range = True
            async with asyncio.timeout(1.5 + _MARGIN):
                with pytest.raises(DeviceDisconnected) as caught:
                    await speaker.get_state()
            assert "1.5 s" in caught.value.message


async def test_a_speaker_back_in_range_reconnects_within_the_policy() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        async with Speaker(sim.address, backend=world.backend, auto_reconnect=True) as speaker:
            sim.faults.in_range = False
            await _wait_until(lambda: not speaker.is_connected)
            sim.faults.in_range = True
            async with asyncio.timeout(DEFAULT_RECONNECT_TIMEOUT):
                await speaker.set_volume(7)
            assert speaker.connections == 2


async def test_a_reconnect_waiting_for_a_connection_slot_is_bounded_and_not_taken_for_gone() -> (
    None
):
    async with SimWorld.fleet(2, adv_interval_ms=20) as world:
        first, second = world.speakers
        limiter = ConnectionLimiter(1)
        async with Speaker(
            first.address,
            backend=world.backend,
            limiter=limiter,
            auto_reconnect=True,
            reconnect_timeout=1.0,
            slot_timeout=0.05,  # a first connect's bound: not a reconnect's
        ) as speaker:
            first.faults.in_range = False
            await _wait_until(lambda: not speaker.is_connected)
            first.faults.in_range = True
            async with Speaker(second.address, backend=world.backend, limiter=limiter):
                async with asyncio.timeout(1.0 + _MARGIN):  # the only slot is taken
                    with pytest.raises(DeviceDisconnected) as caught:
                        await speaker.get_state()
            assert caught.value.reason is not BluetoothReason.NOT_FOUND
            # the total bound ended it, waiting for a slot, not slot_timeout's error
            assert "within 1 s (out of time waiting for a connection slot)" in (
                caught.value.message
            )
            assert (limiter.active, limiter.waiting) == (0, 0)
            await speaker.set_volume(5)  # the slot is free again
            assert speaker.connections == 2


def test_the_default_bound_is_documented() -> None:
    guide = (Path(__file__).parents[2] / "docs" / "library.md").read_text(encoding="utf-8")
    assert f"reconnect_timeout={DEFAULT_RECONNECT_TIMEOUT:g}" in guide
    assert f"{DEFAULT_RECONNECT_TIMEOUT:g} s" in (Speaker.__doc__ or "")


async def test_the_bound_must_be_positive() -> None:
    with pytest.raises(UsageError, match="reconnect_timeout"):
        Speaker("AA:BB:CC:DD:EE:FF", reconnect_timeout=0)
