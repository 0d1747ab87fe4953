"""The record bodies documented in docs/library.md are the ones the collectors make, both ways.

Real parts only: a simulated speaker read through ``Speaker``, the operation-event bus, every
collector under a real consent gate, a real record store, the records exported back. Each
category's table in the guide is parsed; every field a record holds must be documented with its
type, every field documented "always" must be in every record, and every documented field must
show up in some record of the run (so the doc lists no field the code dropped).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from wking_device import (
    OperationTimeout,
    Speaker,
    load_settings,
    open_bindings,
    open_installation_gate,
    open_store,
    resolve_paths,
)
from wking_device.bindings import BINDINGS_SECRET, Binding, Bindings, bindings_path
from wking_device.ble import EventBus
from wking_device.collect import (
    DeviceInfoCollector,
    DiagnosticsCollector,
    LocationCollector,
    OperationLogCollector,
    SoftwareInfoCollector,
)
from wking_device.config import BleSettings
from wking_device.crypto import open_key_store
from wking_device.models import Record
from wking_device.sim import SimWorld
from wking_device.upload._speaker_key import _SPEAKER_FIRST, _without_speaker_key

GUIDE = Path(__file__).parents[1] / "docs" / "library.md"
CATEGORIES = ("operation_logs", "device_info", "software_info", "diagnostics", "location")
ADAPTER = "00:1A:7D:DA:71:13"

_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "number": (int, float),
    "object": (dict,),
    "list[str]": (list,),
}


def documented() -> dict[str, dict[str, tuple[str, bool]]]:
    """category -> field -> (type, always), from the guide's "Record bodies" tables."""
    text = GUIDE.read_text(encoding="utf-8")
    tables: dict[str, dict[str, tuple[str, bool]]] = {}
    for match in re.finditer(r"^#### `(\w+)`\n\n((?:\|.*\n)+)", text, re.M):
        rows = match.group(2).splitlines()[2:]
        fields: dict[str, tuple[str, bool]] = {}
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")]
            name = cells[0].strip("`")
            fields[name] = (cells[1], cells[2].startswith("always"))
        tables[match.group(1)] = fields
    return tables


def _type_ok(kind: str, value: Any) -> bool:
    nullable = kind.endswith(" or null")
    base = kind.removesuffix(" or null")
    if value is None:
        return nullable
    allowed = _TYPES[base]
    if isinstance(value, bool) or not isinstance(value, allowed):
        return False
    return base != "list[str]" or all(isinstance(item, str) for item in value)


def check(records: list[Record], tables: dict[str, dict[str, tuple[str, bool]]]) -> list[str]:
    """Every way the records and the tables disagree."""
    problems: list[str] = []
    seen: dict[str, set[str]] = {category: set() for category in tables}
    for record in records:
        table = tables.get(record.category)
        if table is None:
            problems.append(f"{record.category}: no table in the guide")
            continue
        for name, value in record.body.items():
            seen[record.category].add(name)
            if name not in table:
                problems.append(f"{record.category}.{name}: not documented")
            elif not _type_ok(table[name][0], value):
                problems.append(f"{record.category}.{name}: {value!r} is not {table[name][0]}")
        for name, (_kind, always) in table.items():
            if always and name not in record.body:
                problems.append(f"{record.category}.{name}: documented always, missing")
    for category, table in tables.items():
        problems.extend(
            f"{category}.{name}: documented, never produced"
            for name in sorted(set(table) - seen[category])
        )
    return problems


@pytest.fixture(name="produced")
async def fixture_produced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[Record], str, Path]:
    """Records of every category from a real run, the bound speaker's key, and the home."""
    monkeypatch.setenv("WKING_HOME", str(tmp_path / "home"))
    paths = resolve_paths()
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    gate.grant(
        ["operation_logs", "mac_addresses", "device_info", "software_info", "diagnostics"],
        method="api",
    )
    gate.grant(["location"], method="api")
    bus = EventBus()
    # get_state times out on purpose; 1 s so that read_info before it answers on a loaded machine
    fast = BleSettings(scan_timeout=2.0, connect_timeout=2.0, command_timeout=1.0)
    async with SimWorld.fleet(1, adv_interval_ms=20) as world, open_store(paths, settings) as store:
        sim = world.speakers[0]
        keys = open_key_store(paths)
        Bindings(bindings_path(paths), keys.secret(BINDINGS_SECRET)).bind(
            Binding(address=sim.address, name="kitchen", alias="Kitchen")
        )
        collectors = [
            OperationLogCollector(gate, store, adapter_mac=ADAPTER),
            DiagnosticsCollector(gate, store),
            DeviceInfoCollector(gate, store, host={"os": "Linux", "adapter_model": "CSR8510"}),
            SoftwareInfoCollector(gate, store, bluez_version="5.66"),
            LocationCollector(gate, store, location="Berlin"),
        ]
        operations, diagnostics, device_info, software, location = collectors
        assert isinstance(operations, OperationLogCollector)
        assert isinstance(diagnostics, DiagnosticsCollector)
        assert isinstance(device_info, DeviceInfoCollector)
        assert isinstance(software, SoftwareInfoCollector)
        assert isinstance(location, LocationCollector)
        operations.attach(bus)
        diagnostics.attach(bus)
        async with Speaker(sim.address, backend=world.backend, events=bus, settings=fast) as sp:
            device_info.on_info(await sp.read_info())
            sim.faults.drop_responses = 1.0
            with pytest.raises(OperationTimeout) as caught:
                await sp.get_state()
            diagnostics.on_exception(caught.value, where="/home/someone/rig/runner.py")
        software.snapshot()
        location.snapshot()
        for collector in collectors:
            await collector.flush()
        records = await store.export()
    bound = open_bindings(paths)
    assert len(bound) == 1
    return records, bound[0].speaker, tmp_path / "home"


def test_the_guide_has_a_table_per_category() -> None:
    assert set(documented()) == set(CATEGORIES)


async def test_the_documented_schema_is_what_the_collectors_make(
    produced: tuple[list[Record], str, Path],
) -> None:
    records, _speaker, _home = produced
    assert {r.category for r in records} == set(CATEGORIES)
    assert check(records, documented()) == []


async def test_the_speaker_key_joins_a_binding_and_its_records(
    produced: tuple[list[Record], str, Path],
) -> None:
    records, speaker, _home = produced
    assert re.fullmatch(r"spk:[0-9a-f]{32}", speaker)
    (info,) = [r for r in records if r.category == "device_info"]
    assert info.body["speaker"] == speaker
    about_one = [r for r in records if r.category == "operation_logs" and "speaker" in r.body]
    assert about_one
    assert {r.body["speaker"] for r in about_one} == {speaker}


async def test_the_speaker_key_comes_first_so_the_uploader_cuts_it_unparsed(
    produced: tuple[list[Record], str, Path],
) -> None:
    records, _speaker, _home = produced
    with_key = [r for r in records if "speaker" in r.body]
    assert {r.category for r in with_key} >= {"device_info", "operation_logs"}
    for record in with_key:
        assert next(iter(record.body)) == "speaker", record.body
        text = orjson.dumps(record.body)
        assert text.startswith(_SPEAKER_FIRST)
        cut = _without_speaker_key(text)
        rest = dict(record.body)
        del rest["speaker"]
        assert cut == orjson.dumps(rest)


def test_the_checker_catches_drift_both_ways() -> None:
    tables = {"location": {"location": ("str", True), "city": ("str", False)}}
    record = Record(
        category="location", consent_id="c", policy_version="1", body={"location": 3, "gps": "x"}
    )
    problems = check([record], tables)
    assert "location.location: 3 is not str" in problems
    assert "location.gps: not documented" in problems
    assert "location.city: documented, never produced" in problems
    missing = Record(category="location", consent_id="c", policy_version="1", body={})
    assert "location.location: documented always, missing" in check([missing], tables)
