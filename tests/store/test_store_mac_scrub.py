"""Issue 7, item 1: no MAC-shaped string is kept outside ``mac_addresses``, whoever sends it.

A simulated speaker whose advertised name and Device Information strings hold its own address in
every common notation, operation events and exceptions that carry it in every field, every
collector, the real encrypted store: decrypted, nothing outside the MAC fields of records sealed
under the ``mac_addresses`` key is MAC-shaped; after ``mac_addresses`` is withdrawn, neither the
database file nor its WAL holds a MAC-shaped byte string.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from wking_device._redact import MAC_RE
from wking_device.ble import EventBus, Speaker
from wking_device.collect import (
    DeviceInfoCollector,
    DiagnosticsCollector,
    LocationCollector,
    OperationLogCollector,
    SoftwareInfoCollector,
)
from wking_device.models import MAC_FIELDS, OperationEvent, OperationKind, Outcome, Record
from wking_device.sim import SimWorld, SpeakerSpec
from wking_device.store import DB_FILE, key_scope, open_store

if TYPE_CHECKING:
    from wking_device.collect import Collector
    from wking_device.config import Paths
    from wking_device.store import RecordStore

MAC = "C0:57:4B:00:00:01"
ADAPTER = "0A:1B:2C:3D:4E:5F"
SPELLINGS = [
    "C0:57:4B:00:00:01",
    "c0:57:4b:00:00:01",
    "c0-57-4b-00-00-01",
    "C0-57-4B-00-00-01",
    "C0574B000001",
    "c0574b000001",
    "c0:57:4B:00:00:01",  # mixed case
    "C0_57_4B_00_00_01",  # BlueZ object paths
    "c057.4b00.0001",
    "C057.4B00.0001",
    "C0.57.4B.00.00.01",
    "SNC0574B000001",  # glued to a serial-number prefix, as vendors write it
    "0xC0574B000001",
    "WKC0:57:4B:00:00:01",
    "AC0-57-4B-00-00-01",  # glued to a hex letter: six separated pairs still name it
]
DIGITS = "c0574b000001"
# every notation of the two addresses, in raw bytes, whatever the separator or case
_RAW = re.compile(
    rb"(?i)"
    + rb"|".join(
        rb"[:_.-]?".join(re.escape(d[i : i + 1].encode()) for i in range(12))
        for d in (DIGITS, ADAPTER.replace(":", "").lower())
    )
)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return []


def _outside_mac_fields(record: Record) -> list[str]:
    """Every string of a record that withdrawing mac_addresses would not shred."""
    body = record.body
    if "mac_addresses" in key_scope(record).split("+"):
        body = {k: v for k, v in body.items() if k not in MAC_FIELDS}
    return _strings([record.record_id, record.consent_id, record.policy_version, body])


def _embed(spelling: str, n: int) -> str:
    return ["{}", "fw-{}", "({})", "id={};", "{} rev B", "{}v2"][n % 6].format(spelling)


def _events() -> list[OperationEvent]:
    events = []
    for n, spelling in enumerate(SPELLINGS):
        text = _embed(spelling, n)
        events.append(
            OperationEvent(
                kind=OperationKind.CONNECT,
                outcome=Outcome.ERROR,
                address=MAC,
                name=text,
                model=text,
                error=text,
                error_type=text,
                detail={text: text, "nested": {"list": [text, {"k": text}]}, "n": n},
            )
        )
    return events


class _Boom(Exception):
    pass


def _raise(text: str) -> None:
    raise _Boom(text)


async def _collect(paths: Paths, store: RecordStore, gate) -> list[Collector]:  # type: ignore[no-untyped-def]
    bus = EventBus()
    logs = OperationLogCollector(gate, store, adapter_mac=ADAPTER)
    diagnostics = DiagnosticsCollector(gate, store)
    info = DeviceInfoCollector(gate, store, host={"os": "Linux", "adapter_model": _embed(MAC, 3)})
    software = SoftwareInfoCollector(gate, store, bluez_version=_embed(SPELLINGS[4], 1))
    location = LocationCollector(gate, store, location=_embed(SPELLINGS[8], 2))
    logs.attach(bus)
    diagnostics.attach(bus)
    # a speaker that puts its own address in everything it says about itself
    spec = SpeakerSpec.for_index(
        1,
        address=MAC,
        name=f"WK {SPELLINGS[6]}",
        model_number=f"X8-{SPELLINGS[4]}",
        firmware=f"fw-{SPELLINGS[2]}",
        hardware=f"{SPELLINGS[9]} B",
        serial=SPELLINGS[5],
        adv_interval_ms=20,
    )
    async with (
        SimWorld([spec]) as world,
        Speaker(MAC, backend=world.backend, events=bus) as speaker,
    ):
        device = await speaker.read_info()
        info.on_info(device)
    assert MAC in device.model_dump_json() or SPELLINGS[2] in (device.firmware or "")
    for event in _events():  # the library's on_event, fed by a caller
        logs.on_event(event)
        diagnostics.on_event(event)
    for n, spelling in enumerate(SPELLINGS):
        try:
            _raise(_embed(spelling, n))
        except _Boom as exc:
            diagnostics.on_exception(exc, where=_embed(spelling, n + 1))
    assert software.snapshot()
    assert location.snapshot()
    collectors: list[Collector] = [logs, diagnostics, info, software, location]
    for collector in collectors:
        await collector.flush()
        assert collector.stats.flushed > 0, type(collector).__name__
    del paths
    return collectors


async def test_no_mac_is_kept_outside_mac_addresses_and_withdrawal_leaves_none(
    paths, settings, gate
) -> None:
    gate.grant(["software_info", "location"], method="api")  # conftest granted the others
    store = open_store(paths, settings)
    detach = store.attach(gate)
    try:
        collectors = await _collect(paths, store, gate)
        records = await store.export()
        assert {r.category for r in records} == {
            "operation_logs",
            "device_info",
            "diagnostics",
            "software_info",
            "location",
        }
        # the MAC is kept where mac_addresses allows it ...
        assert any(r.body.get("speaker_mac") == MAC for r in records)
        # ... and nowhere else, in no notation
        leaks = [
            (r.category, s) for r in records for s in _outside_mac_fields(r) if MAC_RE.search(s)
        ]
        assert leaks == []
        info = next(r for r in records if r.category == "device_info")
        assert info.body["firmware"] == "fw-[MAC]"  # scrubbed, not dropped

        gate.withdraw(["mac_addresses"])  # the store purges at once (queued)
        after = await store.export()
        assert after
        assert all(MAC_FIELDS[0] not in r.body for r in after)
        assert [s for r in after for s in _strings(r.body) if MAC_RE.search(s)] == []
        files = [paths.data_dir / DB_FILE, paths.data_dir / f"{DB_FILE}-wal"]
        for path in files:
            if path.exists():
                assert _RAW.search(path.read_bytes()) is None, path.name
    finally:
        detach()
        for collector in locals().get("collectors", []):
            collector.close()
        store.close()
    for path in (paths.data_dir / DB_FILE, paths.data_dir / f"{DB_FILE}-wal"):
        if path.exists():
            assert _RAW.search(path.read_bytes()) is None, path.name


@pytest.mark.parametrize("spelling", SPELLINGS)
async def test_every_spelling_in_every_string_of_a_caller_record_is_scrubbed(
    store, permit, spelling: str
) -> None:
    text = f"before {spelling} after"
    # a prefix glued to the address stays; the address goes
    marked = {
        "SNC0574B000001": "SN[MAC]",
        "0xC0574B000001": "0x[MAC]",
        "WKC0:57:4B:00:00:01": "WK[MAC]",
        "AC0-57-4B-00-00-01": "A[MAC]",
    }.get(spelling, "[MAC]")
    record = Record(
        category="diagnostics",
        consent_id=permit.consent_ids["diagnostics"],
        policy_version=permit.policy_version,
        body={
            "message": text,
            text: [text, {"deep": (text, 1, None, 2.5)}],
            "speaker_mac": spelling,  # a MAC field: needs (and here has) mac_addresses
            "ok": "0000180a-0000-1000-8000-00805f9b34fb sha 9f86d081884c7d659a2feaa0c55ad015",
            "escaped": f"\x1b{spelling}\b",
        },
    )
    await store.append([record], permit)
    (kept,) = await store.export()
    assert kept.body["speaker_mac"] == spelling  # sealed under the mac_addresses key
    assert kept.body["message"] == f"before {marked} after"
    assert kept.body[f"before {marked} after"] == [
        f"before {marked} after",
        {"deep": [f"before {marked} after", 1, None, 2.5]},
    ]
    assert kept.body["ok"] == record.body["ok"]  # UUIDs and digests are not MAC-shaped
    assert kept.body["escaped"] == f"\x1b{marked}\b"
