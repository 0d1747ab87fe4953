"""Polled reads when connection slots are taken: skipped at once when the agent's own kept
sessions hold every slot for good, waited for (bounded by ``ble.slot_timeout``) otherwise.

``slot_timeout`` is long here (120 s) and every run is bounded far below it: a cycle that waited
for a slot held by its own kept session would not finish within the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from wking_device.agent import Agent
from wking_device.ble import Speaker, limiter_for
from wking_device.collect import open_installation_gate
from wking_device.config import BleSettings, load_settings, resolve_paths
from wking_device.sim import AdapterSpec, SimWorld
from wking_device.store import open_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import pytest

    from wking_device.consent import ConsentGate
    from wking_device.store import RecordStore

_SLOT_TIMEOUT_S = 120.0
ONE_SLOT = BleSettings(
    connect_timeout=1.0,
    connect_attempts=2,
    scan_timeout=1.0,
    max_connections=1,
    slot_timeout=_SLOT_TIMEOUT_S,
)
_BOUND_S = 30.0
"""The longest a condition is waited for: a bound for a test that goes wrong, never waited out
(a quarter of ``slot_timeout``)."""

_SKIPPED = "polled reads skipped"
_RESUMED = "polled reads resume"


def _open() -> tuple[ConsentGate, RecordStore]:
    paths, settings = resolve_paths(), load_settings()
    gate, store = open_installation_gate(paths, settings), open_store(paths, settings)
    gate.grant(["device_info"])
    return gate, store


def _agent(
    gate: ConsentGate, store: RecordStore, world: SimWorld, ble: BleSettings, **options: Any
) -> Agent:
    return Agent(
        gate=gate,
        store=store,
        backend=world.backend,
        settings=load_settings().replace(ble=ble),
        interval=0.2,
        scan_seconds=0.4,
        adapter_mac="",
        consent_poll=0.1,
        **options,
    )


async def _until(condition: Callable[[], bool], what: Callable[[], object]) -> None:
    deadline = asyncio.get_running_loop().time() + _BOUND_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {_BOUND_S} s: {what()}")
        await asyncio.sleep(0.05)


def _lines(caplog: pytest.LogCaptureFixture, start: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith("wking_device.agent") and r.getMessage().startswith(start)
    ]


@contextlib.asynccontextmanager
async def _one_slot_one_kept(
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[tuple[SimWorld, Agent]]:
    """Two bound speakers, one slot, an agent keeping one session; every log line captured."""
    caplog.set_level(logging.DEBUG, logger="wking_device")
    gate, store = _open()
    async with SimWorld.fleet(2, adv_interval_ms=20) as world, store:
        bound = {s.address for s in world.speakers}
        yield world, _agent(gate, store, world, ONE_SLOT, bound=bound, keep_connected=1)


async def test_polls_on_slots_the_agent_keeps_are_skipped_at_once_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _one_slot_one_kept(caplog) as (world, agent):
        # the kept session holds the only slot: a poll waiting slot_timeout would not end in time
        summary = await asyncio.wait_for(agent.run(cycles=3), _BOUND_S)
        addresses = [s.address for s in world.speakers]
        names = [s.name for s in world.speakers]
    assert summary.cycles == 3
    assert summary.sessions_kept == 1
    assert summary.reads_ok == 3, summary  # the kept speaker, over its open link
    assert summary.reads_no_slot == 3, summary  # the other one, skipped in every cycle
    assert summary.reads_failed == 3  # and counted as failed, as before
    assert summary.as_dict()["reads_no_slot"] == 3
    assert agent.status("running")["reads_no_slot"] == 3
    skipped = _lines(caplog, _SKIPPED)
    assert len(skipped) == 1, [r.getMessage() for r in skipped]  # once, not every cycle
    assert skipped[0].levelno == logging.WARNING
    line = skipped[0].getMessage()
    assert "the default adapter (1)" in line
    assert "ble.max_connections" in line
    assert not any(a.upper() in line.upper() for a in addresses), line
    assert not any(n in line for n in names), line
    assert not _lines(caplog, _RESUMED)


async def test_polling_resumes_once_a_kept_session_is_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _one_slot_one_kept(caplog) as (world, agent):
        task = asyncio.create_task(agent.run())
        try:
            await _until(
                lambda: agent.summary.reads_no_slot >= 2 and not task.done(),
                lambda: (agent.summary, task),
            )
            (kept,) = agent.sessions.connected()
            polled = next(s for s in world.speakers if s.address.upper() != kept)
            await world.remove_speaker(kept)  # the kept link is lost for good
            # the other speaker is polled again: read through the slot the lost session freed
            await _until(lambda: polled.address.upper() in agent._read, lambda: agent.summary)
            no_slot = agent.summary.reads_no_slot
        finally:
            agent.stop()
            summary = await asyncio.wait_for(task, _BOUND_S)
    assert summary.reads_no_slot == no_slot  # nothing skipped after the slot came free
    assert len(_lines(caplog, _SKIPPED)) == 1
    resumed = _lines(caplog, _RESUMED)
    assert len(resumed) == 1, [r.getMessage() for r in resumed]
    assert resumed[0].levelno == logging.INFO


async def test_a_slot_held_by_a_library_session_keeps_the_bounded_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="wking_device")
    two = ONE_SLOT.replace(max_connections=2)
    gate, store = _open()
    async with SimWorld.fleet(3, adv_interval_ms=20) as world, store:
        *bound, other = world.speakers
        # a library user's session in the same process holds one of the two slots
        user = Speaker(other.address, backend=world.backend, settings=two)
        await user.connect()
        agent = _agent(gate, store, world, two, bound={s.address for s in bound}, keep_connected=1)
        task = asyncio.create_task(agent.run())
        limiter = limiter_for(world.backend, two.max_connections)
        try:
            # the kept session holds the other slot; the polled read waits for one
            await _until(
                lambda: limiter.waiting >= 1 and len(agent.sessions.connected()) == 1,
                lambda: (limiter, agent.summary, task),
            )
            assert agent.summary.reads_no_slot == 0
            await user.disconnect()  # the slot comes free: the waiting read takes it
            await _until(lambda: agent.tally().speakers_read == 2, lambda: agent.summary)
        finally:
            agent.stop()
            summary = await asyncio.wait_for(task, _BOUND_S)
            await user.disconnect()
    assert summary.reads_no_slot == 0
    assert not _lines(caplog, _SKIPPED)


async def test_a_controller_with_fewer_slots_than_kept_sessions_skips_the_polls() -> None:
    # max_connections 3 keeps 2 speakers, but the controller manages 1 connection: the first
    # kept session fills it, the second cannot connect, the third speaker's poll is skipped
    three = ONE_SLOT.replace(max_connections=3)
    gate, store = _open()
    async with SimWorld.fleet(3, adv_interval_ms=20, connection_slots=1) as world, store:
        agent = _agent(gate, store, world, three, bound={s.address for s in world.speakers})
        summary = await asyncio.wait_for(agent.run(cycles=2), _BOUND_S)
    assert summary.cycles == 2
    assert summary.sessions_kept == 2
    assert summary.reads_no_slot == 2, summary  # one polled speaker, in each cycle


async def test_with_several_adapters_polls_are_skipped_only_when_every_one_is_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="wking_device")
    two = ONE_SLOT.replace(adapters=("hci0", "hci1"))
    gate, store = _open()
    adapters = [AdapterSpec("hci0", connection_slots=1), AdapterSpec("hci1", connection_slots=1)]
    async with SimWorld.fleet(3, adv_interval_ms=20, adapters=adapters) as world, store:
        bound = {s.address for s in world.speakers}
        # one kept session: the other adapter's slot is free for the poll
        agent = _agent(
            gate, store, world, two, bound={s.address for s in world.speakers[:2]}, keep_connected=1
        )
        summary = await asyncio.wait_for(agent.run(cycles=1), _BOUND_S)
        assert summary.reads_no_slot == 0, summary
        assert summary.reads_ok == 2, summary
        assert not _lines(caplog, _SKIPPED)
        # two kept sessions, one on each adapter: no slot is left for the third speaker
        agent = _agent(gate, store, world, two, bound=bound, keep_connected=2)
        summary = await asyncio.wait_for(agent.run(cycles=2), _BOUND_S)
    assert summary.sessions_kept == 2
    assert summary.reads_no_slot == 2, summary
    (line,) = (r.getMessage() for r in _lines(caplog, _SKIPPED))
    assert "hci0 (1), hci1 (1)" in line
