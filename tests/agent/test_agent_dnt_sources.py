"""Do Not Track from settings made in code and from ``config.toml`` together (review).

``Agent(paths=…, settings=…)`` took the settings' Do Not Track as the file's until the file
changed, then the file's alone. Settings made in code with Do Not Track on were switched off by
any change to ``config.toml`` (``do_not_track = false`` written there resumed collection: a source
switched off what another switched on), and a file saying ``do_not_track = true`` was ignored
until it changed when the code's settings said off.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tests._waiting import until

from wking_device.agent import Agent
from wking_device.collect import open_installation_gate
from wking_device.config import Settings, resolve_paths
from wking_device.sim import SimWorld
from wking_device.store import open_store

if TYPE_CHECKING:
    from wking_device.config import Paths
    from wking_device.consent import ConsentGate
    from wking_device.store import RecordStore


def _agent(
    gate: ConsentGate, store: RecordStore, world: SimWorld, paths: Paths, settings: Settings
) -> Agent:
    return Agent(
        gate=gate,
        store=store,
        backend=world.backend,
        settings=settings,
        paths=paths,
        connect_all=True,
        interval=0.2,
        scan_seconds=0.2,
        adapter_mac="",
        consent_poll=0.05,
    )


async def _total(paths: Paths, settings: Settings) -> int:
    async with open_store(paths, settings, readonly=True) as store:
        return (await store.stats()).total


async def test_do_not_track_set_in_code_is_not_switched_off_by_config_toml() -> None:
    paths = resolve_paths()
    open_installation_gate(paths, Settings()).grant(["operation_logs", "device_info"])
    settings = Settings(do_not_track=True)  # the program's own choice
    gate = open_installation_gate(paths, settings)
    assert gate.do_not_track
    async with (
        SimWorld.fleet(2, instant_connect=True) as world,
        open_store(paths, settings) as store,
    ):
        agent = _agent(gate, store, world, paths, settings)
        task = asyncio.create_task(agent.run(cycles=8))
        await until(lambda: agent.summary.cycles >= 1)
        paths.config_file.parent.mkdir(parents=True, exist_ok=True)
        paths.config_file.write_text("do_not_track = false\n")  # another source says off
        summary = await asyncio.wait_for(task, 30.0)
    assert summary.cycles == 8
    assert gate.do_not_track
    assert summary.speakers_seen == 0  # never scanned
    assert await _total(paths, settings) == 0


async def test_do_not_track_in_config_toml_counts_when_the_code_made_its_own_settings() -> None:
    paths = resolve_paths()
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text("do_not_track = true\n")
    settings = Settings()  # made in code: says nothing of the file
    gate = open_installation_gate(paths, settings)
    gate.grant(["operation_logs", "device_info"])
    async with (
        SimWorld.fleet(2, instant_connect=True) as world,
        open_store(paths, settings) as store,
    ):
        summary = await _agent(gate, store, world, paths, settings).run(cycles=3)
        assert gate.do_not_track
    assert summary.speakers_seen == 0
    assert await _total(paths, settings) == 0
