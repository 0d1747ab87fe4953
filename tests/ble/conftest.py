"""Fixtures of the BLE-layer tests: a recording event bus, and settings with generous ceilings."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from wking_device.ble import EventBus, RetryPolicy
from wking_device.config import BleSettings
from wking_device.models import OperationEvent, OperationKind


@dataclass
class Recorder:
    """Subscribes to a fresh bus and keeps every event."""

    bus: EventBus = field(default_factory=EventBus)
    events: list[OperationEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bus.subscribe(self.events.append)

    def of(self, kind: OperationKind) -> list[OperationEvent]:
        return [e for e in self.events if e.kind is kind]


@pytest.fixture(name="recorder")
def fixture_recorder() -> Recorder:
    return Recorder()


@pytest.fixture(name="fast_settings")
def fixture_fast_settings() -> BleSettings:
    """Generous ceilings, fast retries: the settings of every BLE test that is not about timing.

    A timeout here is only a bound on a hang: a test waits on answers and finishes as fast as the
    simulator answers, and a loaded CI machine (2 cores, other jobs) holding an answer for a second
    fails nothing. A test ABOUT a timeout firing sets its own short one with ``.replace(...)``,
    as short as keeps it quick and as long as lets its other, successful steps answer in time.
    """
    return BleSettings(
        max_connections=5,
        scan_timeout=5.0,
        connect_timeout=5.0,
        connect_attempts=3,
        command_timeout=5.0,
    )


@pytest.fixture(name="fast_retry")
def fixture_fast_retry() -> RetryPolicy:
    return RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, jitter=0.0)
