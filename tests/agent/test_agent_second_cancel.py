"""A second cancellation that lands while the agent shuts down is not swallowed (review).

The shutdown cancels the consent watcher and the uploader and waits for them. A cancellation of
the run that arrived exactly then was taken for theirs (``suppress(CancelledError)`` around
``await task``), so ``run()`` returned a summary as if it had ended normally. The run is stopped,
then cancelled at the very step where it waits for the task it cancelled (found in its stack);
it must raise ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import linecache
from typing import TYPE_CHECKING, Any

from wking_device.agent import Agent
from wking_device.collect import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.receiver import Receiver
from wking_device.sim import SimWorld
from wking_device.store import open_store
from wking_device.upload import TLSOptions, UploadTarget, open_uploader, parse_endpoint

if TYPE_CHECKING:
    from pathlib import Path

    from wking_device.consent import ConsentGate
    from wking_device.store import RecordStore

_BOUND_S = 30.0  # a bound for a test that goes wrong, never waited out


def _waiting_for(task: asyncio.Task[Any], function: str, name: str) -> bool:
    """Whether ``task`` is suspended in ``function`` on a line that waits for ``name``."""
    coro: Any = task.get_coro()
    while coro is not None:  # the chain of awaits, outermost first
        frame = getattr(coro, "cr_frame", None)
        if frame is not None and frame.f_code.co_name == function:
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
            return "await" in line and name in line
        coro = getattr(coro, "cr_await", None)
    return False


async def _cancel_inside(agent: Agent, function: str, name: str) -> asyncio.Task[Any]:
    run = asyncio.create_task(agent.run(_BOUND_S))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _BOUND_S
    while agent.summary.cycles < 1:
        assert not run.done(), run.result()
        assert loop.time() < deadline, "no cycle"
        await asyncio.sleep(0.02)
    agent.stop()
    while not _waiting_for(run, function, name):
        assert not run.done(), f"the run ended without waiting in {function}"
        assert loop.time() < deadline, f"never waited in {function}"
        await asyncio.sleep(0)  # one step at a time: the wait lasts at least one
    run.cancel()
    await asyncio.wait({run}, timeout=_BOUND_S)
    return run


def _open() -> tuple[ConsentGate, RecordStore]:
    paths, settings = resolve_paths(), load_settings()
    paths.ensure()
    gate = open_installation_gate(paths, settings)
    gate.grant(["operation_logs", "device_info"])
    return gate, open_store(paths, settings)


def _agent(gate: ConsentGate, store: RecordStore, world: SimWorld, **options: Any) -> Agent:
    return Agent(
        gate=gate,
        store=store,
        settings=load_settings(),
        backend=world.backend,
        connect_all=True,
        interval=0.2,
        scan_seconds=0.2,
        adapter_mac="",
        **options,
    )


async def test_a_cancellation_while_the_consent_watcher_stops_is_raised() -> None:
    gate, store = _open()
    async with SimWorld.fleet(1, instant_connect=True) as world, store:
        run = await _cancel_inside(_agent(gate, store, world), "_shut_down", "watcher")
    assert run.cancelled(), f"run() returned {run.result()!r} after being cancelled"


async def test_a_cancellation_while_the_uploader_stops_is_raised(tmp_path: Path) -> None:
    gate, store = _open()
    async with (
        Receiver(tmp_path / "rx") as rx,
        SimWorld.fleet(1, instant_connect=True) as world,
        store,
    ):
        target = UploadTarget(
            endpoint=parse_endpoint(rx.endpoint), tls=TLSOptions(ca_file=rx.ca_file)
        )
        data_dir = resolve_paths().data_dir
        uploader = open_uploader(target, store=store, gate=gate, data_dir=data_dir)
        try:
            agent = _agent(gate, store, world, uploader=uploader, upload_interval=0.2)
            run = await _cancel_inside(agent, "_stop_uploading", "task")
        finally:
            await uploader.aclose()
    assert run.cancelled(), f"run() returned {run.result()!r} after being cancelled"
