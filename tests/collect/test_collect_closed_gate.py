"""A collector whose consent gate was closed collects nothing, quietly.

The gate's contract is that a closed gate issues no permit; a collector still attached to an
event bus asked it for one on every event, and each event logged an ERROR with a traceback from
inside the library ("operation-event subscriber ... raised; skipped").
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wking_device.ble import EventBus
from wking_device.collect import MemorySink, OperationLogCollector
from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import OperationEvent, OperationKind, Outcome

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


async def test_events_after_the_gate_closed_are_skipped_without_an_error(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = resolve_paths(home)
    paths.ensure()
    gate = open_installation_gate(paths, load_settings(paths))
    gate.grant(["operation_logs"], method="api")
    sink, bus = MemorySink(), EventBus()
    collector = OperationLogCollector(gate, sink)
    with collector.attach(bus):
        event = OperationEvent(kind=OperationKind.CONNECT, outcome=Outcome.OK)
        gate.close()  # before the collector asked for a permit
        with caplog.at_level(logging.DEBUG):
            bus.emit(event)
            bus.emit(event)
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
        assert collector.pending == 0
        assert collector.stats.skipped == 2
        assert await collector.flush() == 0
    await collector.aclose()
    assert sink.records == []
