"""The agent's persistent sessions on a simulated world: reconnects, slots, consent."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from wking_device.agent import Agent
from wking_device.collect import open_installation_gate
from wking_device.config import BleSettings, load_settings, resolve_paths
from wking_device.events import Connected, Disconnected
from wking_device.sim import SimWorld
from wking_device.store import open_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from wking_device.ble import EventStream
    from wking_device.consent import ConsentGate
    from wking_device.events import SpeakerEvent
    from wking_device.models import Record
    from wking_device.store import RecordStore

QUICK = BleSettings(connect_timeout=1.0, connect_attempts=2, scan_timeout=1.0)


def _open() -> tuple[ConsentGate, RecordStore]:
    paths, settings = resolve_paths(), load_settings()
    return open_installation_gate(paths, settings), open_store(paths, settings)


def _agent(gate: ConsentGate, store: RecordStore, world: SimWorld, **options: Any) -> Agent:
    defaults: dict[str, Any] = {
        "settings": load_settings().replace(ble=QUICK),
        "interval": 0.5,
        "scan_seconds": 0.4,
        "adapter_mac": "",
        "consent_poll": 0.1,
    }
    return Agent(gate=gate, store=store, backend=world.backend, **{**defaults, **options})


_BOUND_S = 30.0
"""The longest a condition is waited for: a bound for a test that goes wrong, never waited out."""


async def _until(condition: Callable[[], bool], what: str | Callable[[], str]) -> None:
    deadline = asyncio.get_running_loop().time() + _BOUND_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            said = what if isinstance(what, str) else what()
            raise AssertionError(f"not within {_BOUND_S} s: {said}")
        await asyncio.sleep(0.05)


async def _next(stream: EventStream[SpeakerEvent], kind: type) -> SpeakerEvent:
    async with asyncio.timeout(_BOUND_S):
        async for event in stream:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the stream ended before a {kind.__name__}")


def _state_notes(records: list[Record]) -> list[Record]:
    """Operation-log records of vendor events (a notification with an event code)."""
    return [
        r
        for r in records
        if r.category == "operation_logs"
        and r.body.get("kind") == "notify"
        and "code" in r.body.get("detail", {})
    ]


async def test_a_state_change_after_a_reconnect_reaches_the_store() -> None:
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    async with SimWorld.fleet(2, adv_interval_ms=20) as world, store:
        sim = world.speakers[0]
        agent = _agent(gate, store, world, bound={sim.address})
        task = asyncio.create_task(agent.run())
        await _until(lambda: agent.sessions.connected() == {sim.address}, "kept connected")
        async with agent.sessions.session(sim.address).events() as events:
            sim.faults.in_range = False  # the simulator's control: the link times out
            assert await _next(events, Disconnected) == Disconnected(expected=False)
            sim.faults.in_range = True
            assert await _next(events, Connected) == Connected(reconnect=True)
        assert not _state_notes(await store.export())  # nothing had changed so far
        sim.state.volume = 12
        await sim.notify_state()
        # under load a cycle's read may fail while the link comes back, or reconnect it itself
        # (auto-reconnect) before the keeper's backoff is over: wait for both to be done
        await _until(
            lambda: (
                agent.summary.cycles >= 4
                and agent.summary.reads_ok >= 2
                and agent.sessions.reconnects >= 1
            ),
            lambda: (
                "two more cycles (a flush), reads over the link, and the keeper's reconnect: "
                f"{agent.summary.cycles} cycles, {agent.summary.reads_ok} reads ok, "
                f"{agent.sessions.reconnects} reconnects, connected {agent.sessions.connected()}"
            ),
        )
        agent.stop()
        summary = await task
        records = await store.export()
    assert summary.reconnects == agent.sessions.reconnects >= 1
    assert summary.as_dict()["reconnects"] == summary.reconnects
    assert summary.reads_ok >= 2, summary  # over the kept link, before and after the reconnect
    assert _state_notes(records), "the state change after the reconnect was logged"
    assert not world.speakers[1].connected  # not bound: never connected


async def test_more_bound_speakers_than_slots_the_rest_are_polled() -> None:
    gate, store = _open()
    gate.grant(["device_info"])
    async with SimWorld.fleet(3, adv_interval_ms=20) as world, store:
        bound = {s.address for s in world.speakers}
        agent = _agent(gate, store, world, bound=bound, keep_connected=1)
        task = asyncio.create_task(agent.run())
        await _until(lambda: agent.tally().speakers_read == 3, "all three read")
        kept = agent.sessions.connected()
        agent.stop()
        summary = await task
    assert len(kept) == 1
    assert summary.sessions_kept == 1  # after the last cycle; the other two polled
    assert summary.as_dict()["sessions_kept"] == 1
    assert summary.reads_failed == 0
    assert summary.cycles >= 1


async def test_a_withdrawal_closes_the_kept_sessions() -> None:
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    other = open_installation_gate(resolve_paths(), load_settings())  # `wking consent withdraw`
    async with SimWorld.fleet(1, adv_interval_ms=20) as world, store:
        sim = world.speakers[0]
        agent = _agent(gate, store, world, bound={sim.address})
        task = asyncio.create_task(agent.run())
        await _until(lambda: sim.connected and agent.summary.sessions_kept == 1, "kept connected")
        other.withdraw(["operation_logs", "device_info"])
        await _until(lambda: not sim.connected, "disconnected after the withdrawal")
        assert agent.sessions.kept == set()
        agent.stop()
        summary = await task
        assert summary.sessions_kept == 0  # the summary does not claim a session it closed


async def test_every_configured_adapter_scans_for_speakers() -> None:
    # `[ble] adapters`: a speaker only the second adapter hears is seen, kept and read
    gate, store = _open()
    gate.grant(["device_info"])
    two = QUICK.replace(adapters=("hci0", "hci1"))
    settings = load_settings().replace(ble=two)
    async with SimWorld.fleet(2, adv_interval_ms=20, adapters=["hci0", "hci1"]) as world, store:
        on0, on1 = world.speakers
        on0.set_rssi(None, adapter="hci1")
        on1.set_rssi(None, adapter="hci0")
        agent = _agent(gate, store, world, settings=settings, connect_all=True)
        task = asyncio.create_task(agent.run())
        await _until(lambda: agent.tally().speakers_read == 2, lambda: f"{agent.summary}")
        agent.stop()
        summary = await task
    assert summary.speakers_seen == 2
    assert summary.reads_failed == 0, summary.errors
