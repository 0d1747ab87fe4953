"""Fixtures of the BLE-layer tests: a recording event bus and fast timeouts for fault tests."""

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
    """Short timeouts so fault tests finish in well under a second each."""
    return BleSettings(
        max_connections=5,
        scan_timeout=1.0,
        connect_timeout=0.5,
        connect_attempts=3,
        command_timeout=0.3,
    )


@pytest.fixture(name="fast_retry")
def fixture_fast_retry() -> RetryPolicy:
    return RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, jitter=0.0)
