"""Stopping the agent: a flag as well as cancellation, the duration during connects, a ledger
altered while it runs, Do Not Track turned on while it runs, and nothing kept means no radio."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from wking_device.agent import Agent
from wking_device.collect import open_installation_gate
from wking_device.config import BleSettings, load_settings, resolve_paths
from wking_device.consent import ConsentGate, ledger_path
from wking_device.errors import LedgerTampered
from wking_device.models import OperationEvent
from wking_device.sim import FaultPlan, SimWorld
from wking_device.sim._client import SimClient
from wking_device.store import RecordStore, open_store

WKING = str(Path(sys.executable).with_name("wking"))


def _open() -> tuple[ConsentGate, RecordStore]:
    paths, settings = resolve_paths(), load_settings()
    return open_installation_gate(paths, settings), open_store(paths, settings)


def _agent(gate: ConsentGate, store: RecordStore, world: SimWorld, **options: Any) -> Agent:
    defaults: dict[str, Any] = {
        "settings": load_settings(),
        "connect_all": True,
        "interval": 0.3,
        "scan_seconds": 0.3,
        "adapter_mac": "",
        "consent_poll": 0.1,
    }
    return Agent(gate=gate, store=store, backend=world.backend, **{**defaults, **options})


async def _until(condition: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


# --- item 10: --duration during connects ----------------------------------------------------------


async def test_the_duration_is_enforced_while_connects_are_slow() -> None:
    # A speaker that never accepts: each connect attempt waits its full timeout (10 s, 3 tries).
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    slow = BleSettings(connect_timeout=10.0, connect_attempts=3)
    never = FaultPlan(connectable=False)
    async with SimWorld.fleet(2, instant_connect=True, faults=never) as world, store:
        settings = load_settings().replace(ble=slow)
        agent = _agent(gate, store, world, settings=settings)
        started = time.monotonic()
        summary = await asyncio.wait_for(agent.run(1.0), 40.0)
        took = time.monotonic() - started
    # the duration, the half second a step may overrun it, and the time it gets to unwind
    assert took < 1.0 + 0.5 + 2.0, took
    assert summary.reads_ok == 0


# --- item 7: a lost cancellation ------------------------------------------------------------------


class _Deaf(SimClient):
    """A Bluetooth backend that swallows the cancellation of a connect (as Python 3.11's
    ``wait_for`` can when the inner call completes at the moment it is cancelled)."""

    entered: ClassVar[list[float]] = []

    async def connect(self, *args: Any, **kwargs: Any) -> None:
        self.entered.append(time.monotonic())
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue  # lost
        await super().connect(*args, **kwargs)


async def test_a_stop_is_obeyed_although_a_bluetooth_call_swallows_its_cancellation() -> None:
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        deaf = type("SimBleakClient", (_Deaf,), {"_world": world})
        backend = type(world.backend)(scanner=world.backend.scanner, client=deaf)
        agent = Agent(
            gate=gate,
            store=store,
            settings=load_settings(),
            backend=backend,
            connect_all=True,
            interval=0.3,
            scan_seconds=0.3,
            adapter_mac="",
            stop_grace=0.5,
        )
        task = asyncio.create_task(agent.run())
        await _until(lambda: bool(_Deaf.entered))
        agent.stop()
        started = time.monotonic()
        summary = await asyncio.wait_for(task, 10.0)
        took = time.monotonic() - started
    assert took < 0.5 + 1.0, took
    assert summary.reads_ok == 0  # it did not go on to read speakers after the stop


async def test_stop_before_run_only_shuts_down() -> None:
    gate, store = _open()
    gate.grant(["device_info"])
    async with SimWorld.fleet(1, instant_connect=True) as world, store:
        agent = _agent(gate, store, world)
        agent.stop()
        summary = await asyncio.wait_for(agent.run(), 5.0)
    assert summary.cycles == 0
    assert summary.speakers_seen == 0


# --- item 8: a ledger altered while the agent runs ------------------------------------------------


async def test_a_ledger_altered_while_running_ends_the_run_with_one_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    ledger = ledger_path(resolve_paths())
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world)
        task = asyncio.create_task(agent.run(30.0))
        await _until(lambda: agent.summary.cycles >= 1)
        text = ledger.read_text()
        ledger.write_text(text.replace("operation_logs", "operation_logz", 1))
        started = time.monotonic()
        with caplog.at_level(logging.DEBUG), pytest.raises(LedgerTampered):
            await asyncio.wait_for(task, 10.0)
        took = time.monotonic() - started
    assert took < 3.0, took
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "ledger" in errors[0].getMessage()
    assert agent.summary.cycles >= 1  # the summary of what happened before is there
    assert not agent.operations.active  # the closed gate denies everything


# --- item 15: nothing to keep, no radio -----------------------------------------------------------


@pytest.mark.parametrize("dnt", [False, True])
async def test_with_nothing_it_may_keep_the_agent_scans_and_connects_to_nobody(
    monkeypatch: pytest.MonkeyPatch, dnt: bool
) -> None:
    if dnt:
        monkeypatch.setenv("DO_NOT_TRACK", "1")
    gate, store = _open()
    if dnt:
        gate.grant(["operation_logs", "device_info"])
    events: list[OperationEvent] = []
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world)
        unsubscribe = agent._events.subscribe(events.append)
        summary = await agent.run(1.0)
        unsubscribe()
    assert summary.cycles >= 1
    assert summary.speakers_seen == 0
    assert events == []  # no scan, no connect, nothing for a collector to skip


# --- item 6: Do Not Track while the agent runs ----------------------------------------------------


def _wking(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **(env or {})}
    return subprocess.run(
        [WKING, *args], capture_output=True, text=True, timeout=60, check=False, env=full
    )


async def _total(store: RecordStore) -> int:
    return (await store.stats()).total


async def test_do_not_track_in_config_toml_stops_a_running_agent_at_once() -> None:
    paths = resolve_paths()
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    async with SimWorld.fleet(3, instant_connect=True) as world, store:
        agent = _agent(gate, store, world, paths=paths)
        task = asyncio.create_task(agent.run(30.0))
        await _until(lambda: agent.operations.stats.flushed > 0)
        paths.config_file.parent.mkdir(parents=True, exist_ok=True)
        paths.config_file.write_text("do_not_track = true\n")
        await _until(lambda: not agent.operations.active, within=2.0)
        assert gate.do_not_track
        stored = await _total(store)
        await _until(lambda: agent.summary.cycles >= 3 + agent.summary.cycles // 2)
        await asyncio.sleep(0)
        assert await _total(store) == stored  # nothing more, although cycles went on
        # taking it out of the file resumes collection
        paths.config_file.write_text("do_not_track = false\n")
        await _until(lambda: agent.operations.active, within=2.0)
        agent.stop()
        await asyncio.wait_for(task, 10.0)


async def test_do_not_track_from_another_process_is_not_undone_by_a_third() -> None:
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world, paths=resolve_paths())
        task = asyncio.create_task(agent.run(60.0))
        await _until(lambda: agent.operations.stats.flushed > 0)
        # another command that writes, run with DO_NOT_TRACK=1, records dnt_on: the agent stops
        # collecting (commands that only report record nothing)
        done = _wking("consent", "grant", "--yes", "diagnostics", env={"DO_NOT_TRACK": "1"})
        assert done.returncode == 0, done.stderr
        await _until(lambda: not agent.operations.active, within=3.0)
        # any writing command run without the variable records dnt_off: collection stays stopped
        done = _wking("consent", "grant", "--yes", "software_info")
        assert done.returncode == 0, done.stderr
        cycles = agent.summary.cycles
        await _until(lambda: agent.summary.cycles >= cycles + 3)
        assert not agent.operations.active
        assert not agent.device_info.active
        agent.stop()
        await asyncio.wait_for(task, 10.0)


async def test_started_under_do_not_track_in_config_toml_it_resumes_when_taken_out() -> None:
    paths = resolve_paths()
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("do_not_track = true\n")
    gate, store = _open()
    gate.grant(["operation_logs", "device_info"])
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = _agent(gate, store, world, paths=paths, settings=load_settings(paths))
        task = asyncio.create_task(agent.run(30.0))
        await _until(lambda: agent.summary.cycles >= 2)
        assert agent.summary.speakers_seen == 0  # no scan under Do Not Track
        assert agent.operations.stats.flushed == 0
        paths.config_file.write_text("do_not_track = false\n")
        await _until(lambda: agent.operations.stats.flushed > 0)
        agent.stop()
        await asyncio.wait_for(task, 10.0)


# --- item 7: the last stage, a run that does not stop at all --------------------------------------


async def test_a_run_that_ignores_every_cancellation_is_abandoned_within_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import signal  # noqa: PLC0415

    from wking_device.cli import _agent as cli_agent  # noqa: PLC0415

    monkeypatch.setattr(cli_agent, "GRACE_S", 0.3)
    monkeypatch.setattr(cli_agent, "HARD_S", 0.4)
    _gate, store = _open()
    state = cli_agent._Run()
    state.store = store

    async def stuck() -> tuple[dict[str, Any], None]:
        # stands for a Bluetooth call that loses every cancellation (bounded, for the test)
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)
        raise AssertionError("never reached: the run was abandoned")

    supervisor = asyncio.create_task(cli_agent._stop_within_deadline(state, stuck()))
    await asyncio.sleep(0.1)
    state.on_signal(signal.SIGTERM)
    started = time.monotonic()
    summary, error = await asyncio.wait_for(supervisor, 10.0)
    took = time.monotonic() - started
    assert took < 0.3 + 0.4 + 0.5, took
    assert summary["stopped_by"] == "SIGTERM"
    assert error is None
    assert store.closed  # what the store acknowledged is on disk, and its lock is free
