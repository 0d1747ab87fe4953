"""The agent in-process, on a simulated world: withdrawal mid-run, faults, bindings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, TypeVar

from wking_device.agent import Agent
from wking_device.collect import open_installation_gate
from wking_device.config import BleSettings, load_settings, resolve_paths
from wking_device.sim import SimWorld
from wking_device.store import open_store

_T = TypeVar("_T")

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

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


def _open() -> tuple[ConsentGate, RecordStore]:
    paths, settings = resolve_paths(), load_settings()
    return open_installation_gate(paths, settings), open_store(paths, settings)


async def test_withdrawal_mid_run_takes_effect_at_once() -> None:
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    async with SimWorld.fleet(3, instant_connect=True) as world, store:
        agent = _agent(gate, store, world)
        task = asyncio.create_task(agent.run(4.0))
        for _ in range(100):
            await asyncio.sleep(0.1)
            if (await store.stats()).by_category.get("operation_logs", 0) > 0:
                break
        else:
            raise AssertionError("no operation logs were stored while granted")
        gate.withdraw(["operation_logs"])
        stats = await store.stats()  # queued behind the purge the withdrawal triggered
        assert "operation_logs" not in stats.by_category
        await task
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
        agent = _agent(
            gate, store, world, settings=load_settings().model_copy(update={"ble": quick})
        )
        summary = await agent.run(2.0)
    assert summary.reads_ok >= 2
    assert summary.reads_failed >= 1
    errors = [r for r in await _export() if r.category == "operation_logs" and "error" in r.body]
    assert errors, "the failed connection attempts were logged"


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
        task = asyncio.create_task(agent.run(3.0))
        await asyncio.sleep(1.0)
        other.withdraw(["operation_logs"])
        await asyncio.sleep(0.5)  # a few polls
        assert not gate.allows("operation_logs")
        assert "operation_logs" not in (await store.stats()).by_category
        await task
    assert "operation_logs" not in (await _stats()).by_category


async def test_only_bound_speakers_are_read() -> None:
    gate, store = _open()
    gate.grant(["device_info"])
    async with SimWorld.fleet(3, instant_connect=True) as world, store:
        bound = {world.speakers[1].address}
        agent = _agent(gate, store, world, bound=bound)
        summary = await agent.run(1.5)
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
        task = asyncio.create_task(agent.run(3.0))
        for _ in range(100):
            await asyncio.sleep(0.1)
            if (await store.stats()).by_category.get("operation_logs", 0) > 0:
                break
        else:
            raise AssertionError("no operation logs were stored while granted")
        # both before the agent's next look at the ledger (no await in between)
        other.withdraw(["operation_logs"])
        second = other.grant(["operation_logs"])
        await task
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
        summary = await agent.run(1.5)
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
        task = asyncio.create_task(agent.run(2.5))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if agent.summary.cycles:
                break
        ledger.rename(ledger.with_name("moved-aside"))
        ledger.mkdir()  # reading it now fails with an OS error
        summary = await task
    assert summary.cycles >= 2
    assert any(line.startswith("cycle:") for line in summary.errors)


async def test_a_withdrawal_seen_only_at_shutdown_is_still_carried_out() -> None:
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    other = open_installation_gate(resolve_paths(), load_settings())
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world, consent_poll=60.0, interval=60.0)
        task = asyncio.create_task(agent.run())
        for _ in range(100):
            await asyncio.sleep(0.1)
            if (await store.stats()).by_category.get("operation_logs", 0) > 0:
                break
        else:
            raise AssertionError("no operation logs were stored while granted")
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
        task = asyncio.create_task(agent.run(5.0))

        async def reads(name: str) -> int:
            return sum(1 for r in await store.export(["device_info"]) if r.body.get("name") == name)

        for _ in range(100):
            await asyncio.sleep(0.1)
            if await reads(gone.spec.name):
                break
        else:
            raise AssertionError("the bound speaker was never read")
        bindings.unbind(gone.address)
        cycles = agent.summary.cycles
        for _ in range(100):  # two whole cycles after the unbind
            if agent.summary.cycles >= cycles + 2 or task.done():
                break
            await asyncio.sleep(0.1)
        before = await reads(gone.spec.name)
        await task
        assert await reads(gone.spec.name) == before
        assert await reads(kept.spec.name) > 0


async def test_an_embedded_agent_logs_no_speaker_address(caplog) -> None:  # type: ignore[no-untyped-def]
    # a library user's own logging set-up, at DEBUG, no call to any redaction helper
    caplog.set_level(logging.DEBUG, logger="wking_device")
    gate, store = _open()
    gate.grant(["device_info"])
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        addresses = [speaker.address for speaker in world.speakers]
        summary = await _agent(gate, store, world).run(1.5)
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
        summary = await agent.run(3.0)
        kept = (await store.stats()).by_category.get("device_info", 0)
    stored = summary.records["DeviceInfoCollector"]
    assert stored >= 6
    assert kept < stored  # the older ones were deleted while the agent ran
