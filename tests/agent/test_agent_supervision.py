"""Agent supervision: a failing part is logged once, counted, retried; the run goes on.

Failures come through real seams: the real store wrapped so that one of its methods fails once
(as a full disk or a locked file would), a speaker that is out of range. The status file is
checked for what it must never hold (addresses in every spelling, speaker names). Runs end on a
condition (the failures counted, records stored), then ``Agent.stop()``; the duration given is
only a bound.
"""

from __future__ import annotations

import asyncio
import logging
import stat
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from wking_device.agent import STATUS_FILE, Agent
from wking_device.cli._demo import scan_for_macs
from wking_device.collect import open_installation_gate
from wking_device.config import BleSettings, load_settings, resolve_paths
from wking_device.errors import StorageError
from wking_device.receiver import Receiver
from wking_device.sim import SimWorld
from wking_device.store import open_store
from wking_device.upload import TLSOptions, UploadTarget, open_uploader, parse_endpoint

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from wking_device.agent import AgentSummary
    from wking_device.consent import ConsentGate
    from wking_device.store import RecordStore


class _FailsOnce:
    """The real store, except that the named method raises ``error`` the first ``times`` calls."""

    def __init__(self, store: RecordStore, method: str, error: Exception, times: int = 1) -> None:
        self._store = store
        self._method = method
        self._error = error
        self.left = times

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if name != self._method:
            return real

        async def failing(*args: Any, **kwargs: Any) -> Any:
            if self.left > 0:
                self.left -= 1
                raise self._error
            return await real(*args, **kwargs)

        return failing


_BOUND_S = 30.0
"""The longest a run may take: a bound for a test that goes wrong, never waited out."""


async def _run_until(
    agent: Agent, condition: Callable[[], Awaitable[bool]], what: str
) -> AgentSummary:
    """Run the agent until ``condition()`` holds (polled, at most ``_BOUND_S``), then stop it."""
    task = asyncio.create_task(agent.run(_BOUND_S))
    deadline = asyncio.get_running_loop().time() + _BOUND_S
    try:
        while not await condition():
            if task.done():
                break  # the run ended by itself: its summary tells what happened
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not within {_BOUND_S} s: {what}")
            await asyncio.sleep(0.05)
    finally:
        agent.stop()
    return await task


def _open() -> tuple[ConsentGate, RecordStore]:
    paths, settings = resolve_paths(), load_settings()
    paths.ensure()
    return open_installation_gate(paths, settings), open_store(paths, settings)


def _agent(gate: ConsentGate, store: Any, world: SimWorld, **options: Any) -> Agent:
    defaults: dict[str, Any] = {
        "settings": load_settings(),
        "connect_all": True,
        "interval": 0.3,
        "scan_seconds": 0.25,
        "adapter_mac": "",
        "status_file": resolve_paths().data_dir / STATUS_FILE,
        "max_backoff": 0.6,
    }
    return Agent(gate=gate, store=store, backend=world.backend, **{**defaults, **options})


def _status() -> dict[str, Any]:
    path = resolve_paths().data_dir / STATUS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


async def test_a_sweep_and_a_flush_that_fail_once_do_not_end_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate, real = _open()
    gate.grant(["operation_logs", "device_info", "diagnostics"])
    async with SimWorld.fleet(2, instant_connect=True) as world, real:
        sweep = _FailsOnce(real, "sweep", StorageError("disk I/O error"))
        flaky = _FailsOnce(sweep, "append", StorageError("database is locked"), times=2)
        agent = _agent(gate, flaky, world, sweep_every=0.2)

        async def recovered() -> bool:
            failures, stats = agent.summary.failures, await real.stats()
            return (
                failures.get("retention") == 1
                and failures.get("store", 0) >= 1
                and agent.summary.cycles >= 3
                and stats.by_category.get("operation_logs", 0) > 0
            )

        with caplog.at_level(logging.WARNING, logger="wking_device.agent"):
            summary = await _run_until(agent, recovered, "both failures counted and retried")
        stats = await real.stats()
    assert summary.failures["retention"] == 1
    assert summary.failures["store"] >= 1
    assert summary.cycles >= 3
    assert stats.by_category.get("operation_logs", 0) > 0  # the buffered batch was retried
    lines = [r.getMessage() for r in caplog.records if "failed (StorageError)" in r.getMessage()]
    assert sum("database is locked" in line for line in lines) == 1, lines  # logged once
    status = _status()
    assert status["state"] == "stopped"
    assert status["failures"]["retention"] == 1
    assert {e["part"] for e in status["last_errors"]} >= {"retention", "store"}
    assert all(e["type"] == "StorageError" for e in status["last_errors"])


async def test_an_uploader_that_raises_is_restarted(receiver_dir: Path) -> None:
    gate, real = _open()
    gate.grant(["operation_logs", "device_info"])
    paths = resolve_paths()
    async with (
        Receiver(receiver_dir) as rx,
        SimWorld.fleet(2, instant_connect=True) as world,
        real,
    ):
        # an unexpected exception (not an upload or storage error) escapes Uploader.run
        flaky = _FailsOnce(
            real, "claim_opened", RuntimeError("claim broke")
        )  # the uploader's claim
        target = UploadTarget(
            endpoint=parse_endpoint(rx.endpoint), tls=TLSOptions(ca_file=rx.ca_file)
        )
        uploader = open_uploader(target, store=flaky, gate=gate, data_dir=paths.data_dir)  # type: ignore[arg-type]
        try:
            agent = _agent(gate, real, world, uploader=uploader, upload_interval=0.2)

            async def restarted() -> bool:
                return agent.summary.failures.get("upload") == 1 and rx.stats.stored > 0

            summary = await _run_until(agent, restarted, "the uploader restarted and uploading")
        finally:
            await uploader.aclose()
        received = rx.stats.stored
        left = (await real.stats()).total
    assert summary.failures["upload"] == 1
    assert received > 0, "the restarted uploader uploaded"
    assert summary.upload is not None
    # a request cut short by the stop may have reached the receiver unacknowledged: such records
    # stay pending here (the next drain re-sends them, the receiver de-duplicates)
    assert summary.upload["sent"] <= received <= summary.upload["sent"] + left


async def test_one_speaker_out_of_range_never_stops_the_others_and_the_status_is_clean() -> None:
    gate, store = _open()
    gate.grant(["operation_logs", "device_info", "diagnostics"])
    async with SimWorld.fleet(3, instant_connect=True) as world, store:
        addresses = [s.address for s in world.speakers]
        names = [s.spec.name for s in world.speakers]
        quick = load_settings().replace(
            ble=BleSettings(connect_timeout=0.5, connect_attempts=1, scan_timeout=0.5)
        )
        agent = _agent(gate, store, world, settings=quick)
        task = asyncio.create_task(agent.run(_BOUND_S))
        for _ in range(300):  # bounded: 30 s
            if _read_ok(task) >= 3:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the three speakers were not read")
        world.speakers[0].faults.in_range = False
        cycles = agent.summary.cycles
        for _ in range(300):  # bounded: 30 s; two whole cycles without the speaker
            if task.done() or (agent.summary.cycles >= cycles + 2 and agent.summary.reads_ok > 3):
                break
            await asyncio.sleep(0.1)
        agent.stop()
        summary = await task
    assert summary.speakers_read == 3
    assert summary.reads_ok > 3
    status_path = resolve_paths().data_dir / STATUS_FILE
    _, _, hits = scan_for_macs([status_path], addresses)
    assert hits == []
    raw = status_path.read_bytes()
    for name in names:
        assert name.encode() not in raw


def _read_ok(task: asyncio.Task[Any]) -> int:
    if task.done():
        raise AssertionError(task.result())
    try:
        return int(_status()["speakers_read"])
    except FileNotFoundError:
        return 0


def test_the_scrubber_takes_out_addresses_and_names() -> None:
    gate, store = _open()
    agent = Agent(gate=gate, store=store, settings=load_settings(), adapter_mac="")
    agent._names.add("W-KING Kitchen")
    message = "W-KING Kitchen (C0:57:4B:00:00:01) failed: c0-57-4b-00-00-01 \x1b[31m"
    scrubbed = agent._scrub(message * 10)
    assert "Kitchen" not in scrubbed
    assert "C0:57" not in scrubbed.upper()
    assert "C0-57" not in scrubbed.upper()
    assert len(scrubbed) == 200
    asyncio.run(store.aclose())


@pytest.fixture(name="receiver_dir")
def fixture_receiver_dir(tmp_path: Path) -> Path:
    return tmp_path / "rx"
