"""Fixtures for the record store tests: a real key store, a real consent gate, a real database."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import Record
from wking_device.store import open_store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from wking_device.config import Paths, Settings
    from wking_device.consent import ConsentGate, Permit
    from wking_device.store import RecordStore

GRANTED = ("operation_logs", "device_info", "diagnostics", "mac_addresses")


@pytest.fixture(name="paths")
def fixture_paths(home: Path) -> Paths:
    paths = resolve_paths(home)
    paths.ensure()
    return paths


@pytest.fixture(name="settings")
def fixture_settings(paths: Paths) -> Settings:
    return load_settings(paths)


@pytest.fixture(name="gate")
def fixture_gate(paths: Paths, settings: Settings) -> ConsentGate:
    gate = open_installation_gate(paths, settings)
    gate.grant(GRANTED, method="api")
    return gate


@pytest.fixture(name="permit")
def fixture_permit(gate: ConsentGate) -> Permit:
    return gate.permit(GRANTED)


@pytest.fixture(name="make_record")
def fixture_make_record(permit: Permit) -> Callable[..., Record]:
    def make(category: str = "operation_logs", **body: Any) -> Record:
        return Record(
            category=category,
            consent_id=permit.consent_ids.get(category, "none"),
            policy_version=permit.policy_version,
            body=body or {"op": "connect", "outcome": "ok"},
        )

    return make


@pytest.fixture(name="writer", params=["thread", "process"])
def fixture_writer(request: pytest.FixtureRequest) -> str:
    """Who commits appends: the writer thread, or a writer process (``writer_process=True``).

    A test about one of them only says so with ``@pytest.mark.parametrize("writer", [...])``.
    """
    return str(request.param)


@pytest.fixture(name="store")
def fixture_store(
    paths: Paths, settings: Settings, gate: ConsentGate, writer: str
) -> Iterator[RecordStore]:
    del gate  # the gate creates the key store first, as the installation does
    store = open_store(paths, settings, writer_process=writer == "process")
    yield store
    store.close()
