"""An agent runs once (review).

``Agent.run`` called while a run was going started a second loop on the same collectors: each
operation event reached the operation-log collector twice (attached twice to the bus), so the
store kept duplicate records, and both loops scanned and connected. Called again after a run, it
went on with the closed collectors and sessions, its cycle count carried over: ``run(cycles=1)``
again ran no cycle and returned the first run's summary as its own.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from wking_device.agent import Agent
from wking_device.collect import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.errors import UsageError
from wking_device.sim import SimWorld
from wking_device.store import open_store

if TYPE_CHECKING:
    from wking_device.consent import ConsentGate
    from wking_device.store import RecordStore


def _open() -> tuple[ConsentGate, RecordStore]:
    paths, settings = resolve_paths(), load_settings()
    gate = open_installation_gate(paths, settings)
    gate.grant(["operation_logs", "device_info"])
    return gate, open_store(paths, settings)


def _agent(gate: ConsentGate, store: RecordStore, world: SimWorld) -> Agent:
    return Agent(
        gate=gate,
        store=store,
        backend=world.backend,
        settings=load_settings(),
        connect_all=True,
        interval=0.1,
        scan_seconds=0.3,
        adapter_mac="",
        keep_connected=0,
    )


async def test_a_second_run_while_one_goes_is_a_usage_error() -> None:
    gate, store = _open()
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world)
        first = asyncio.create_task(agent.run(30.0, cycles=2))
        await asyncio.sleep(0)  # the first run has started
        with pytest.raises(UsageError, match="runs once"):
            await agent.run(30.0, cycles=2)
        summary = await asyncio.wait_for(first, 30.0)
        stored = (await store.stats()).by_category
    assert summary.cycles == 2
    assert summary.reads_ok == 4
    # each operation once: the second call attached nothing
    assert stored["operation_logs"] == summary.records["OperationLogCollector"]


async def test_a_second_run_after_one_ended_is_a_usage_error() -> None:
    gate, store = _open()
    async with SimWorld.fleet(1, instant_connect=True) as world, store:
        agent = _agent(gate, store, world)
        summary = await asyncio.wait_for(agent.run(30.0, cycles=1), 30.0)
        assert summary.cycles == 1
        with pytest.raises(UsageError, match="runs once"):
            await agent.run(30.0, cycles=1)


async def test_stop_before_run_then_run_only_shuts_down() -> None:
    # it used to take the software and location snapshots (records stored) before looking
    gate, store = _open()
    gate.grant(["software_info", "location"])
    settings = load_settings().replace(location="Berlin")
    async with SimWorld.fleet(1, instant_connect=True) as world, store:
        agent = Agent(
            gate=gate, store=store, backend=world.backend, settings=settings, adapter_mac=""
        )
        agent.stop()
        summary = await asyncio.wait_for(agent.run(30.0), 30.0)
        stats = await store.stats()
    assert summary.cycles == 0
    assert summary.speakers_seen == 0
    assert sum(summary.records.values()) == 0
    assert stats.total == 0


# --- the code's arguments are checked like the command line's and the file's ------------------

_BAD_SECONDS = [0, -1.0, float("nan"), float("inf"), True, "5"]


@pytest.mark.parametrize(
    "name",
    ["interval", "scan_seconds", "consent_poll", "sweep_every", "upload_interval", "max_backoff"],
)
@pytest.mark.parametrize("value", _BAD_SECONDS, ids=repr)
async def test_a_period_that_is_not_a_positive_number_of_seconds_is_a_usage_error(
    name: str, value: object
) -> None:
    # interval=0 or consent_poll=0 spun the event loop (no pause between cycles or ledger looks);
    # upload_interval=0 failed the uploader at every restart, so nothing was ever uploaded
    gate, store = _open()
    async with SimWorld.fleet(1, instant_connect=True) as world, store:
        with pytest.raises(UsageError, match=name):
            Agent(
                gate=gate,
                store=store,
                backend=world.backend,
                settings=load_settings(),
                adapter_mac="",
                **{name: value},  # type: ignore[arg-type]
            )


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), "2"], ids=repr)
async def test_stop_grace_and_duration_must_be_numbers_of_seconds(value: object) -> None:
    gate, store = _open()
    async with SimWorld.fleet(1, instant_connect=True) as world, store:
        with pytest.raises(UsageError, match="stop_grace"):
            Agent(
                gate=gate,
                store=store,
                backend=world.backend,
                settings=load_settings(),
                adapter_mac="",
                stop_grace=value,  # type: ignore[arg-type]
            )
        agent = _agent(gate, store, world)
        with pytest.raises(UsageError, match="duration"):
            await agent.run(value)  # type: ignore[arg-type]
        # refused before anything started: the agent can still run
        summary = await asyncio.wait_for(agent.run(30.0, cycles=1), 30.0)
    assert summary.cycles == 1


# --- what a long run remembers of the speakers around it is bounded -----------------------------


async def test_speakers_seen_and_their_names_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every distinct address heard advertising was kept for the whole run, and every name: a
    # device nearby advertising W-KING look-alikes under ever new random addresses and names
    # grew the agent's memory without end (and the names' scrub of each status message).
    from wking_device.agent import _cycle  # noqa: PLC0415

    monkeypatch.setattr(_cycle, "_SEEN_MAX", 3, raising=False)
    gate, store = _open()
    async with SimWorld.fleet(6, instant_connect=True) as world, store:
        agent = Agent(
            gate=gate,
            store=store,
            backend=world.backend,
            settings=load_settings(),
            interval=0.1,
            scan_seconds=0.5,
            adapter_mac="",
            bound={world.speakers[0].address},
            keep_connected=0,
        )
        summary = await asyncio.wait_for(agent.run(30.0, cycles=2), 30.0)
    assert summary.speakers_seen == 3  # counted up to the bound
    assert summary.reads_ok == 2  # the bound speaker is read all the same
    # only the names of speakers it connects to can reach an error message
    assert agent._names == {world.speakers[0].name}
