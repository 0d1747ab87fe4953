"""A fault-injection test rig: twenty simulated speakers, some misbehaving, read as a fleet.

Standalone pytest file (copy it into any project that installs ``wking-device[sim]``): the
``sim_fleet`` fixture comes from the simulator's pytest plugin, registered on install. Run it
with ``pytest examples/test_fault_rig.py`` (pytest-asyncio in ``auto`` mode, or keep the
marker below).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wking_device import (
    BluetoothError,
    ConnectionFailed,
    DeviceDisconnected,
    EventBus,
    OperationEvent,
    OperationKind,
    read_all,
)
from wking_device.config import BleSettings
from wking_device.sim import FaultPlan

if TYPE_CHECKING:
    from wking_device.sim import SimFleet

pytestmark = pytest.mark.asyncio

FLEET = 20


async def test_a_fleet_read_reports_each_faulty_speaker_and_reads_the_rest(
    sim_fleet: SimFleet,
) -> None:
    world = await sim_fleet(FLEET, instant_connect=True, adv_interval_ms=20)
    world.speakers[0].faults = FaultPlan(connectable=False)
    world.speakers[1].faults = FaultPlan(disconnect_after_ops=1)
    events: list[OperationEvent] = []
    bus = EventBus()
    with bus.subscribe(events.append):
        result = await read_all(
            [speaker.address for speaker in world.speakers],
            backend=world.backend,
            events=bus,
            settings=BleSettings(
                connect_timeout=1.0, command_timeout=1.0, connect_attempts=2, scan_timeout=2.0
            ),
            limit=5,
        )

    assert len(result.infos) == FLEET - 2
    assert set(result.errors) == {world.speakers[0].address, world.speakers[1].address}
    assert isinstance(result.errors[world.speakers[0].address], BluetoothError)
    assert isinstance(
        result.errors[world.speakers[1].address], DeviceDisconnected | ConnectionFailed
    )
    assert result.peak_connections <= 5
    assert any(event.kind is OperationKind.CONNECT for event in events)
