"""An agent given settings made in code still honours Do Not Track in its environment (review).

``Agent(paths=None, settings=Settings())`` took its own Do Not Track from the settings alone: with
``DO_NOT_TRACK=1`` in the environment it switched the gate's Do Not Track off on its first
consent poll (before the gate read the environment itself, so it collected; now that the gate
refuses, it would fail that poll over and over).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from wking_device.agent import Agent
from wking_device.collect import open_installation_gate
from wking_device.config import Settings, resolve_paths
from wking_device.sim import SimWorld
from wking_device.store import open_store

if TYPE_CHECKING:
    import pytest


async def test_an_agent_with_settings_made_in_code_keeps_do_not_track_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    paths, settings = resolve_paths(), Settings()
    open_installation_gate(paths, settings).grant(["operation_logs", "device_info"])
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    gate = open_installation_gate(paths, settings)
    store = open_store(paths, settings)
    caplog.set_level(logging.WARNING)
    async with SimWorld.fleet(2, instant_connect=True) as world, store:
        agent = Agent(
            gate=gate,
            store=store,
            backend=world.backend,
            settings=settings,
            connect_all=True,
            interval=0.3,
            scan_seconds=0.3,
            adapter_mac="",
            consent_poll=0.05,
        )
        await asyncio.wait_for(agent.run(1.0), 20.0)  # a run of 1 s: about 20 consent polls
    assert gate.do_not_track
    assert (await _stats(paths, settings)) == 0
    assert "Do Not Track is off" not in caplog.text
    assert "Do Not Track stays on" not in caplog.text


async def _stats(paths: Any, settings: Settings) -> int:
    async with open_store(paths, settings, readonly=True) as store:
        return (await store.stats()).total
