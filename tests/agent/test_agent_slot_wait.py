"""An agent cycle whose reads find every connection slot held does not hang: they fail, typed.

A kept session holds the adapter's only slot for good; the bound speaker polled beside it waits
for a slot at most ``ble.slot_timeout``, is counted as a failed read, and the next cycle runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from wking_device.agent import Agent
from wking_device.collect import open_installation_gate
from wking_device.config import BleSettings, load_settings, resolve_paths
from wking_device.sim import SimWorld
from wking_device.store import open_store

ONE_SLOT = BleSettings(
    connect_timeout=1.0, connect_attempts=2, scan_timeout=1.0, max_connections=1, slot_timeout=0.3
)
_BOUND_S = 30.0
"""The longest a condition is waited for: a bound for a test that goes wrong, never waited out."""


async def test_a_read_no_slot_comes_for_fails_and_the_next_cycle_runs() -> None:
    paths, settings = resolve_paths(), load_settings()
    gate, store = open_installation_gate(paths, settings), open_store(paths, settings)
    gate.grant(["device_info"])
    async with SimWorld.fleet(2, adv_interval_ms=20) as world, store:
        options: dict[str, Any] = {
            "settings": settings.replace(ble=ONE_SLOT),
            "interval": 0.2,
            "scan_seconds": 0.4,
            "adapter_mac": "",
            "consent_poll": 0.1,
        }
        agent = Agent(
            gate=gate,
            store=store,
            backend=world.backend,
            bound={s.address for s in world.speakers},
            keep_connected=1,
            **options,
        )
        task = asyncio.create_task(agent.run())
        deadline = asyncio.get_running_loop().time() + _BOUND_S
        while not (agent.summary.cycles >= 3 and agent.summary.reads_failed >= 2):
            assert asyncio.get_running_loop().time() < deadline, agent.summary
            assert not task.done(), task
            await asyncio.sleep(0.05)
        kept = agent.sessions.connected()
        agent.stop()
        summary = await asyncio.wait_for(task, _BOUND_S)
    assert len(kept) == 1  # the kept session held the only slot throughout
    assert summary.reads_failed >= 2
    assert summary.cycles >= 3
