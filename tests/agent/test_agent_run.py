"""The agent in-process, on a simulated world: withdrawal mid-run, faults, bindings.

Runs end on a condition, not after a fixed time: :func:`_until` waits (bounded) for what the test
needs to have happened, then :func:`_stopped` stops the agent and returns its summary. The
duration given to ``Agent.run`` is only a bound for a run that goes wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, TypeVar

import pytest

from wking_device.agent import Agent
from wking_device.collect import open_installation_gate
from wking_device.config import BleSettings, load_settings, resolve_paths
from wking_device.errors import UsageError
from wking_device.sim import SimWorld
from wking_device.store import open_store

_T = TypeVar("_T")

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from wking_device.agent import AgentSummary
    from wking_device.consent import ConsentGate
    from wking_device.models import Record
    from wking_device.store import RecordStore, StoreStats


def _agent(gate: ConsentGate, store: RecordStore, world: SimWorld, **options: object) -> Agent:
    defaults: dict[str, object] = {
        "settings": load_settings(),
        "connect_all": True,
        "interval": 0.5,
        "scan_seconds": 0.4,
        "adapter_mac": "",
    }
    return Agent(gate=gate, store=store, backend=world.backend, **{**defaults, **options})  # type: ignore[arg-type]


_BOUND_S = 30.0
"""The longest a run may take: a bound for a test that goes wrong, never waited out."""


async def _until(condition: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Wait until ``condition()`` holds (polled every 50 ms), at most ``_BOUND_S`` seconds."""
    deadline = asyncio.get_running_loop().time() + _BOUND_S
    while True:
        met = condition()
        if not isinstance(met, bool):
            met = await met
        if met:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {_BOUND_S} s: {what}")
        await asyncio.sleep(0.05)


async def _stopped(agent: Agent, task: asyncio.Task[AgentSummary]) -> AgentSummary:
    """Stop a running agent (as SIGTERM does) and return its summary."""
    agent.stop()
    return await task


async def _run_until(agent: Agent, condition: Callable[[], bool], what: str) -> AgentSummary:
    """Run the agent until ``condition()`` holds, then stop it; its summary."""
    task = asyncio.create_task(agent.run(_BOUND_S))
    try:
        await _until(lambda: condition() or task.done(), what)
    finally:
        agent.stop()
    return await task


def _open() -> tuple[ConsentGate, RecordStore]:
    paths, settings = resolve_paths(), load_settings()
    return open_installation_gate(paths, settings), open_store(paths, settings)


async def test_withdrawal_mid_run_takes_effect_at_once() -> None:
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    async with SimWorld.fleet(3, instant_connect=True) as world, store:
        agent = _agent(gate, store, world)
        task = asyncio.create_task(agent.run(_BOUND_S))
        await _until(lambda: _has(store, "operation_logs"), "operation logs stored while granted")
        gate.withdraw(["operation_logs"])
        stats = await store.stats()  # queued behind the purge the withdrawal triggered
        assert "operation_logs" not in stats.by_category
        await _until(lambda: _has(store, "device_info", 3), "the three speakers read")
        await _stopped(agent, task)
        stats = await store.stats()
        assert "operation_logs" not in stats.by_category
        assert stats.by_category.get("device_info", 0) >= 3
        assert stats.shredded > 0


async def test_a_failing_speaker_does_not_stop_the_others() -> None:
    gate, store = _open()
    gate.grant(["operation_logs", "device_info", "diagnostics"])
    async with SimWorld.fleet(3, instant_connect=True) as world, store:
        world.speakers[0].faults.connectable = False
        quick = BleSettings(connect_timeout=0.5, connect_attempts=2)
        agent = _agent(gate, store, world, settings=load_settings().replace(ble=quick))
        summary = await _run_until(
            agent,
            lambda: agent.summary.reads_ok >= 2 and agent.summary.reads_failed >= 1,
            "two speakers read and one failed",
        )
    assert summary.reads_ok >= 2
    assert summary.reads_failed >= 1
    errors = [r for r in await _export() if r.category == "operation_logs" and "error" in r.body]
    assert errors, "the failed connection attempts were logged"


async def _has(store: RecordStore, category: str, count: int = 1) -> bool:
    return (await store.stats()).by_category.get(category, 0) >= count


async def _read_only(read: Callable[[RecordStore], Awaitable[_T]]) -> _T:
    """Read the installation's store through a second, read-only store."""
    reopened = open_store(resolve_paths(), load_settings(), readonly=True)
    try:
        return await read(reopened)
    finally:
        await reopened.aclose()


async def _export() -> list[Record]:
    return await _read_only(lambda store: store.export())


async def _stats() -> StoreStats:
    return await _read_only(lambda store: store.stats())


async def test_withdrawal_in_another_process_stops_collection_at_once() -> None:
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    # a second gate on the same ledger stands for `wking consent withdraw` in another process
    other = open_installation_gate(resolve_paths(), load_settings())
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world, consent_poll=0.1)
        task = asyncio.create_task(agent.run(_BOUND_S))
        await _until(lambda: _has(store, "operation_logs"), "operation logs stored while granted")
        other.withdraw(["operation_logs"])
        await _until(lambda: not gate.allows("operation_logs"), "the withdrawal seen (polled)")
        assert "operation_logs" not in (await store.stats()).by_category
        await _stopped(agent, task)
    assert "operation_logs" not in (await _stats()).by_category


async def test_only_bound_speakers_are_read() -> None:
    gate, store = _open()
    gate.grant(["device_info"])
    async with SimWorld.fleet(3, instant_connect=True) as world, store:
        bound = {world.speakers[1].address}
        agent = _agent(gate, store, world, bound=bound)
        summary = await _run_until(
            agent,
            lambda: agent.tally().speakers_seen == 3 and agent.summary.reads_ok >= 1,
            "three speakers seen and the bound one read",
        )
        assert summary.speakers_seen == 3
        assert summary.reads_ok >= 1
        exported = await store.export()
    names = {r.body.get("name") for r in exported if r.category == "device_info"}
    assert names == {world.speakers[1].spec.name}


async def test_withdraw_and_regrant_elsewhere_shreds_what_the_old_grant_collected() -> None:
    gate, store = _open()
    first = gate.grant(["operation_logs", "device_info"])
    other = open_installation_gate(resolve_paths(), load_settings())
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world, consent_poll=0.1)
        task = asyncio.create_task(agent.run(_BOUND_S))
        await _until(lambda: _has(store, "operation_logs"), "operation logs stored while granted")
        # both before the agent's next look at the ledger (no await in between)
        other.withdraw(["operation_logs"])
        second = other.grant(["operation_logs"])

        async def shredded() -> bool:
            return (await store.stats()).shredded > 0

        await _until(shredded, "what the old grant collected shredded")
        await _stopped(agent, task)
        kept = [r for r in await store.export() if r.category == "operation_logs"]
    assert first.id != second.id
    assert {r.consent_id for r in kept} <= {second.id}
    assert (await _stats()).shredded > 0


async def test_a_full_store_at_shutdown_still_closes_everything_and_returns_the_summary() -> None:
    paths, settings = resolve_paths(), load_settings()
    gate = open_installation_gate(paths, settings)
    gate.grant(["operation_logs", "device_info", "diagnostics"])
    # a cap below one record and nothing to evict: every append is StoreFull
    store = open_store(paths, settings, max_bytes=10)
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world)
        summary = await _run_until(
            agent,
            # records go to the store as they come: its error can precede the first cycle's end
            lambda: (
                agent.summary.cycles >= 1
                and any(line.startswith("store:") for line in agent.summary.errors)
            ),
            "a whole cycle and a store error",
        )
        assert summary.cycles >= 1
        assert any(line.startswith("store:") for line in summary.errors)
        assert all(collector.pending == 0 for collector in agent.collectors)
        # every collector stopped listening to the gate, the full one included
        assert len(gate._listeners) == 0  # the subscription list is the point
        assert (await store.stats()).total == 0


async def test_an_unreadable_ledger_fails_a_cycle_not_the_run() -> None:
    from wking_device.consent import ledger_path  # noqa: PLC0415

    gate, store = _open()
    gate.grant(["device_info"])
    ledger = ledger_path(resolve_paths())
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world, consent_poll=60.0)
        task = asyncio.create_task(agent.run(_BOUND_S))
        await _until(lambda: agent.summary.cycles >= 1, "a first cycle")
        ledger.rename(ledger.with_name("moved-aside"))
        ledger.mkdir()  # reading it now fails with an OS error
        await _until(
            lambda: (
                agent.summary.cycles >= 2
                and any(line.startswith("cycle:") for line in agent.summary.errors)
            ),
            "a failed cycle after the first",
        )
        summary = await _stopped(agent, task)
    assert summary.cycles >= 2
    assert any(line.startswith("cycle:") for line in summary.errors)


async def test_a_withdrawal_seen_only_at_shutdown_is_still_carried_out() -> None:
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    other = open_installation_gate(resolve_paths(), load_settings())
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world, consent_poll=60.0, interval=60.0)
        task = asyncio.create_task(agent.run())
        await _until(lambda: _has(store, "operation_logs"), "operation logs stored while granted")
        await _until(lambda: _has(store, "device_info"), "device info stored while granted")
        # withdrawn elsewhere, then the agent is stopped (Ctrl-C) before its next look
        other.withdraw(["operation_logs"])
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        stats = await store.stats()
    assert "operation_logs" not in stats.by_category
    assert stats.by_category.get("device_info", 0) >= 1


async def test_unbinding_a_speaker_while_the_agent_runs_stops_its_reads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os  # noqa: PLC0415

    from wking_device.bindings import Binding, Bindings  # noqa: PLC0415

    gate, store = _open()
    gate.grant(["device_info"])
    bindings = Bindings(tmp_path / "devices.bin", os.urandom(32))
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        gone, kept = world.speakers
        for speaker in world.speakers:
            bindings.bind(Binding(address=speaker.address))
        agent = _agent(gate, store, world, bound=bindings.addresses, connect_all=False)
        task = asyncio.create_task(agent.run(_BOUND_S))

        async def reads(name: str) -> int:
            return sum(1 for r in await store.export(["device_info"]) if r.body.get("name") == name)

        async def gone_read() -> bool:
            return await reads(gone.spec.name) > 0

        await _until(gone_read, "the bound speaker read")
        bindings.unbind(gone.address)
        cycles = agent.summary.cycles
        await _until(lambda: agent.summary.cycles >= cycles + 2, "two whole cycles after unbind")
        before = await reads(gone.spec.name)
        await _until(lambda: agent.summary.cycles >= cycles + 3, "one more cycle")
        await _stopped(agent, task)
        assert await reads(gone.spec.name) == before
        assert await reads(kept.spec.name) > 0


async def test_an_embedded_agent_logs_no_speaker_address(caplog) -> None:  # type: ignore[no-untyped-def]
    # a library user's own logging set-up, at DEBUG, no call to any redaction helper
    caplog.set_level(logging.DEBUG, logger="wking_device")
    gate, store = _open()
    gate.grant(["device_info"])
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        addresses = [speaker.address for speaker in world.speakers]
        agent = _agent(gate, store, world)
        summary = await _run_until(agent, lambda: agent.summary.reads_ok >= 2, "two reads")
    assert summary.reads_ok >= 2
    text = "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith("wking_device")
    )
    assert "[MAC]" in text  # the package did log addresses, redacted
    for address in addresses:
        for form in (address, address.lower(), address.replace(":", "_")):
            assert form not in text


async def test_a_long_running_agent_sweeps_expired_records() -> None:
    paths, settings = resolve_paths(), load_settings()
    gate = open_installation_gate(paths, settings)
    gate.grant(["device_info"])
    # one second of retention for device_info, and a sweep every 0.3 s
    store = open_store(paths, settings, retention={"device_info": 1.0})
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world, interval=0.3, scan_seconds=0.2, sweep_every=0.3)
        task = asyncio.create_task(agent.run(_BOUND_S))

        async def swept() -> bool:
            stored = agent.tally().records.get("DeviceInfoCollector", 0)
            return stored >= 6 and (await store.stats()).by_category.get("device_info", 0) < stored

        await _until(swept, "six records stored and older ones deleted")
        summary = await _stopped(agent, task)
        kept = (await store.stats()).by_category.get("device_info", 0)
    stored = summary.records["DeviceInfoCollector"]
    assert stored >= 6
    assert kept < stored  # the older ones were deleted while the agent ran


async def test_a_run_of_n_cycles_runs_exactly_n() -> None:
    gate, store = _open()
    gate.grant(["device_info"])
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world, interval=0.1, scan_seconds=0.3, keep_connected=0)
        summary = await asyncio.wait_for(agent.run(_BOUND_S, cycles=3), _BOUND_S)
    assert summary.cycles == 3
    assert summary.reads_ok == 6  # each speaker once per cycle


async def test_a_run_of_one_cycle_ends_without_waiting_for_the_interval() -> None:
    gate, store = _open()
    gate.grant(["device_info"])
    async with SimWorld.fleet(3, instant_connect=True) as world, store:
        agent = _agent(gate, store, world, interval=3600.0, scan_seconds=0.4)
        # an hour-long interval: a pause after the last cycle would hit the bound
        summary = await asyncio.wait_for(agent.run(None, cycles=1), _BOUND_S)
    assert summary.cycles == 1
    assert summary.reads_ok == 3


async def test_cycles_below_one_is_a_usage_error() -> None:
    gate, store = _open()
    async with SimWorld.fleet(1, instant_connect=True) as world, store:
        agent = _agent(gate, store, world)
        with pytest.raises(UsageError, match="at least 1"):
            await agent.run(cycles=0)
