from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from wking_device.ble import EventBus
from wking_device.collect import (
    DeviceInfoCollector,
    DiagnosticsCollector,
    LocationCollector,
    MemorySink,
    OperationLogCollector,
    SoftwareInfoCollector,
    host_adapter_mac,
    open_installation_gate,
    scrub,
)
from wking_device.config import load_settings, resolve_paths
from wking_device.consent import ConsentGate, Ledger, ledger_path
from wking_device.errors import ConsentRequired, PermitRevoked, StoreFull
from wking_device.models import DeviceInfo, OperationEvent, OperationKind, Outcome

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from wking_device.consent import Permit
    from wking_device.models import Record

SPEAKER = "C0:00:00:00:00:01"
ADAPTER = "00:1A:7D:DA:71:13"


@pytest.fixture(name="gate")
def fixture_gate(tmp_path: Path) -> ConsentGate:
    return ConsentGate(Ledger(tmp_path / "ledger.jsonl", b"c" * 32))


def _event(**kwargs: object) -> OperationEvent:
    base: dict[str, object] = {
        "kind": OperationKind.CONNECT,
        "outcome": Outcome.OK,
        "address": SPEAKER,
        "name": "W-KING X8",
        "detail": {"rssi": -60, "peer": SPEAKER},
    }
    base.update(kwargs)
    return OperationEvent(**base)  # type: ignore[arg-type]


async def test_operation_logs_without_mac_grant_have_no_mac_fields(gate: ConsentGate) -> None:
    gate.grant(["operation_logs"], method="api")
    sink = MemorySink()
    collector = OperationLogCollector(gate, sink, adapter_mac=ADAPTER)
    collector.on_event(_event())
    assert await collector.flush() == 1
    (record,) = sink.records
    assert record.category == "operation_logs"
    assert "speaker_mac" not in record.body
    assert "adapter_mac" not in record.body
    assert record.body["detail"] == {"rssi": -60}  # a MAC-valued detail is dropped too
    assert SPEAKER not in repr(record.body)
    assert record.consent_id == gate.state("operation_logs").consent_id
    assert record.policy_version == gate.policy.version


async def test_mac_grant_attaches_both_macs(gate: ConsentGate) -> None:
    gate.grant(["operation_logs", "mac_addresses"], method="api")
    sink = MemorySink()
    collector = OperationLogCollector(gate, sink, adapter_mac=ADAPTER)
    collector.on_event(_event())
    collector.on_event(_event(kind=OperationKind.SCAN, address=None))
    await collector.flush()
    first, scan = sink.records
    assert first.body["speaker_mac"] == SPEAKER
    assert first.body["adapter_mac"] == ADAPTER
    assert "speaker_mac" not in scan.body
    assert scan.body["adapter_mac"] == ADAPTER


async def test_mac_withdrawal_before_flush_strips_macs(gate: ConsentGate) -> None:
    gate.grant(["operation_logs", "mac_addresses"], method="api")
    sink = MemorySink()
    collector = OperationLogCollector(gate, sink, adapter_mac=ADAPTER)
    collector.on_event(_event())
    gate.withdraw(["mac_addresses"])
    await collector.flush()
    (record,) = sink.records
    assert "speaker_mac" not in record.body
    assert "adapter_mac" not in record.body
    assert record.body["detail"] == {"rssi": -60}


async def test_withdrawal_drops_buffered_records_and_stops_collection(gate: ConsentGate) -> None:
    gate.grant(["operation_logs"], method="api")
    sink = MemorySink()
    collector = OperationLogCollector(gate, sink, adapter_mac="")
    for _ in range(3):
        collector.on_event(_event())
    gate.withdraw(["operation_logs"])
    assert collector.pending == 0
    collector.on_event(_event())
    assert await collector.flush() == 0
    assert sink.records == []
    assert collector.stats.discarded == 3
    assert collector.stats.skipped == 1
    gate.grant(
        ["operation_logs"], method="api"
    )  # a new grant: collection resumes under a new permit
    collector.on_event(_event())
    assert await collector.flush() == 1


async def test_bus_attachment_and_automatic_batches(gate: ConsentGate) -> None:
    gate.grant(["operation_logs"], method="api")
    sink = MemorySink()
    collector = OperationLogCollector(gate, sink, adapter_mac="", batch_size=10)
    bus = EventBus()
    unsubscribe = collector.attach(bus)
    for _ in range(25):
        bus.emit(_event())
    await _until(lambda: len(sink.records) >= 20)
    unsubscribe()
    await collector.aclose()
    assert len(sink.records) == 25


class _FlakySink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    async def append(self, records: Sequence[Record], permit: Permit) -> None:
        if self.fail:
            raise StoreFull("disk full")
        await super().append(records, permit)


async def test_sink_failure_keeps_records_for_the_next_flush(gate: ConsentGate) -> None:
    gate.grant(["diagnostics"], method="api")
    sink = _FlakySink()
    collector = DiagnosticsCollector(gate, sink)
    collector.on_event(_event(outcome=Outcome.TIMEOUT, error="timeout"))
    collector.on_event(_event(outcome=Outcome.OK))  # not a failure: not recorded
    with pytest.raises(StoreFull):
        await collector.flush()
    assert collector.pending == 1
    sink.fail = False
    assert await collector.flush() == 1
    assert sink.records[0].body["error"] == "timeout"


class _RevokingSink(MemorySink):
    def __init__(self, gate: ConsentGate) -> None:
        super().__init__()
        self.gate = gate

    async def append(self, records: Sequence[Record], permit: Permit) -> None:
        self.gate.withdraw(["device_info"])  # withdrawn while the sink works
        await super().append(records, permit)


async def test_revocation_during_the_sink_call_is_refused(gate: ConsentGate) -> None:
    gate.grant(["device_info"], method="api")
    sink = _RevokingSink(gate)
    collector = DeviceInfoCollector(gate, sink, host={"os": "Linux"})
    collector.on_info(DeviceInfo(address=SPEAKER, model="X8", firmware="1.2", battery=80))
    assert await collector.flush() == 0
    assert sink.records == []
    assert sink.refused == 1


async def test_memory_sink_checks_categories_and_mac_fields(gate: ConsentGate) -> None:
    gate.grant(["operation_logs", "device_info"], method="api")
    collector = OperationLogCollector(gate, MemorySink(), adapter_mac="")
    collector.on_event(_event())
    record = collector._buffer[0][0]
    sink = MemorySink()
    with pytest.raises(ConsentRequired):
        await sink.append([record], gate.permit(["device_info"]))
    forged = type(record)(
        category="operation_logs", consent_id="x", policy_version="1", body={"speaker_mac": SPEAKER}
    )
    with pytest.raises(ConsentRequired):
        await sink.append([forged], gate.permit(["operation_logs"]))
    permit = gate.permit(["operation_logs"])
    gate.withdraw(["operation_logs"])
    with pytest.raises(PermitRevoked):
        await sink.append([record], permit)
    assert sink.records == []


def _fail() -> None:
    raise OSError(f"cannot reach {SPEAKER} via /home/alice/.cache/wking/x.db")


async def test_device_software_location_and_exception_records(gate: ConsentGate) -> None:
    gate.grant(["device_info", "software_info", "location", "diagnostics"], method="api")
    sink = MemorySink()
    info = DeviceInfoCollector(gate, sink, host={"os": "Linux", "adapter_model": "hci-x"})
    info.on_info(DeviceInfo(address=SPEAKER, name=SPEAKER, model="X8", battery=80))
    software = SoftwareInfoCollector(gate, sink, bluez_version="5.72")
    assert software.snapshot()
    assert not LocationCollector(gate, sink, location=None).snapshot()
    location = LocationCollector(gate, sink, location=" Berlin ")
    assert location.snapshot()
    diag = DiagnosticsCollector(gate, sink)
    try:
        _fail()
    except OSError as exc:
        diag.on_exception(exc, where="uploader")
    for collector in (info, software, location, diag):
        await collector.flush()
    by_category = {r.category: r.body for r in sink.records}
    assert by_category["device_info"] == {
        "model": "X8",
        "battery": 80,
        "host": {"os": "Linux", "adapter_model": "hci-x"},
    }
    assert by_category["software_info"]["bluez"] == "5.72"
    assert by_category["software_info"]["python"]
    assert by_category["location"] == {"location": "Berlin"}
    message = by_category["diagnostics"]["message"]
    assert SPEAKER not in message
    assert "alice" not in message
    assert "<mac>" in message
    assert "x.db" in message


def test_scrub_and_adapter_mac(tmp_path: Path) -> None:
    assert scrub("aa-bb-cc-dd-ee-ff at /var/lib/wking/data") == "<mac> at <path>/data"
    assert host_adapter_mac(tmp_path) is None
    (tmp_path / "hci0").mkdir()
    (tmp_path / "hci0" / "address").write_text("00:1a:7d:da:71:13\n")
    assert host_adapter_mac(tmp_path) == ADAPTER


def test_installation_gate_keeps_its_key_apart_and_persists(home: Path) -> None:
    paths = resolve_paths()
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    gate.grant(["software_info"], method="api")
    again = open_installation_gate(paths, settings)
    assert again.tampered is None
    assert again.state("software_info").granted
    ledger_dir = ledger_path(paths).parent
    assert home in ledger_dir.parents
    assert not any("key" in p.name for p in ledger_dir.iterdir())


async def test_many_events_are_all_collected_under_a_grant_and_none_without(
    gate: ConsentGate,
) -> None:
    # (how fast: benchmarks/, not a timed assertion here)
    gate.grant(["operation_logs", "mac_addresses"], method="api")
    sink = MemorySink()
    collector = OperationLogCollector(gate, sink, adapter_mac=ADAPTER, max_buffer=10**6)
    events = [_event() for _ in range(20_000)]
    for event in events:
        collector.on_event(event)
    denied_sink = MemorySink()
    denied = OperationLogCollector(
        ConsentGate(Ledger(gate.ledger.path.with_name("other.jsonl"), b"d" * 32)), denied_sink
    )
    for event in events:
        denied.on_event(event)
    await collector.flush()
    await denied.flush()
    assert len(sink.records) == 20_000
    assert denied_sink.records == []


def test_scrub_knows_every_mac_notation_and_leaves_uuids() -> None:
    bluez = "[org.bluez.Error.Failed] /org/bluez/hci0/dev_C0_00_00_00_00_01 not available"
    assert "C0_00_00_00_00_01" not in scrub(bluez)
    assert "<mac>" in scrub(bluez)
    assert scrub("device c00000000001 gone") == "device <mac> gone"
    assert scrub("device c000.0000.0001 gone") == "device <mac> gone"
    uuid = "0000180a-0000-1000-8000-00805f9b34fb"
    assert scrub(f"read {uuid}") == f"read {uuid}"


async def test_no_mac_in_an_operation_log_without_mac_fields(gate: ConsentGate) -> None:
    # A MAC as the advertised name, or nested in the details, must not ride in a record that
    # has no MAC field: such a record is not sealed under the mac_addresses key, so withdrawing
    # mac_addresses would not destroy it (and without that grant it must not exist at all).
    from wking_device.store import key_scope  # noqa: PLC0415

    nested = {"rssi": -60, "peers": [SPEAKER.lower()], "path": {"dev": "dev_C0_00_00_00_00_01"}}
    gate.grant(["operation_logs"], method="api")
    sink = MemorySink()
    collector = OperationLogCollector(gate, sink, adapter_mac=ADAPTER)
    collector.on_event(_event(name=SPEAKER, detail=nested))
    gate.grant(["mac_addresses"], method="api")
    # the MAC grant is in force, but a scan has no speaker and this host no known adapter
    scan = OperationLogCollector(gate, sink, adapter_mac="")
    scan.on_event(_event(kind=OperationKind.SCAN, address=None, name=SPEAKER, detail=nested))
    await collector.flush()
    await scan.flush()
    assert len(sink.records) == 2
    for record in sink.records:
        text = repr(record.body).upper()
        if key_scope(record) == "operation_logs":
            assert "C0:00:00:00:00:01" not in text
            assert "C0_00_00_00_00_01" not in text
        assert record.body["detail"] == {"rssi": -60}
        assert "name" not in record.body


async def test_salvage_strips_a_mac_valued_name(gate: ConsentGate) -> None:
    gate.grant(["operation_logs", "mac_addresses"], method="api")
    sink = MemorySink()
    collector = OperationLogCollector(gate, sink, adapter_mac=ADAPTER)
    collector.on_event(_event(name=SPEAKER))
    gate.withdraw(["mac_addresses"])
    await collector.flush()
    (record,) = sink.records
    assert SPEAKER not in repr(record.body)


async def test_a_record_of_a_withdrawn_grant_is_not_salvaged_onto_a_new_grant(
    gate: ConsentGate, tmp_path: Path
) -> None:
    first = gate.grant(["operation_logs", "mac_addresses"], method="api")
    sink = MemorySink()
    collector = OperationLogCollector(gate, sink, adapter_mac=ADAPTER)
    collector.on_event(_event())
    assert collector.pending == 1
    # another process withdraws operation_logs (mac_addresses goes with it) and grants it again
    other = ConsentGate(Ledger(tmp_path / "ledger.jsonl", b"c" * 32))
    other.withdraw(["operation_logs"])
    second = other.grant(["operation_logs"], method="api")
    assert gate.refresh()
    await collector.flush()
    assert sink.records == []
    assert collector.stats.discarded == 1
    # what is collected from now on carries the new grant
    collector.on_event(_event())
    await collector.flush()
    assert [r.consent_id for r in sink.records] == [second.id]
    assert first.id != second.id


async def test_records_without_their_key_store_are_never_given_a_fresh_one(home: Path) -> None:
    # keys/ and consent/ lost (a partial restore), records.sqlite3 still there: a clear
    # KeyMissing, not a new key store that then calls the records foreign.
    from wking_device.crypto import key_dir  # noqa: PLC0415
    from wking_device.errors import KeyMissing  # noqa: PLC0415
    from wking_device.store import open_store  # noqa: PLC0415

    paths = resolve_paths()
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    gate.grant(["software_info"], method="api")
    async with open_store(paths, settings) as store:
        collector = SoftwareInfoCollector(gate, store)
        assert collector.snapshot()
        assert await collector.flush() == 1
    (key_dir(paths) / "keystore.json").unlink()
    for file in ledger_path(paths).parent.iterdir():
        file.unlink()
    with pytest.raises(KeyMissing):
        open_installation_gate(paths, settings)
    assert not (key_dir(paths) / "keystore.json").exists()
    assert home in paths.data_dir.parents


class _GatedSink(MemorySink):
    """A sink that holds every hand-over until released, recording each batch's size."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def append(self, records: Sequence[Record], permit: Permit) -> None:
        self.entered.set()
        await self.release.wait()
        self.batches.append(len(records))
        await super().append(records, permit)


async def _until(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds (bounded: 5 s)."""
    async with asyncio.timeout(5.0):
        while not condition():  # noqa: ASYNC110 - polls state the code under test owns
            await asyncio.sleep(0)


async def test_eager_collector_hands_records_over_without_a_flush_call(gate: ConsentGate) -> None:
    gate.grant(["operation_logs"], method="api")
    sink = _GatedSink()
    collector = OperationLogCollector(gate, sink, adapter_mac="")
    collector.on_event(_event())
    await asyncio.wait_for(sink.entered.wait(), 5.0)  # no flush(), no timer: it is on its way
    for _ in range(5):  # these arrive while the first hand-over is in flight
        collector.on_event(_event())
    sink.release.set()
    await _until(lambda: len(sink.records) == 6)
    assert sink.batches == [1, 5]  # one hand-over in flight; the rest go in the next, together
    assert collector.pending == 0
    collector.close()


async def test_lazy_collector_waits_for_flush(gate: ConsentGate) -> None:
    gate.grant(["operation_logs"], method="api")
    sink = MemorySink()
    collector = OperationLogCollector(gate, sink, adapter_mac="", eager=False)
    collector.on_event(_event())
    for _ in range(20):
        await asyncio.sleep(0)
    assert sink.records == []
    assert await collector.flush() == 1


async def test_a_failing_sink_is_not_retried_per_record(
    gate: ConsentGate, caplog: pytest.LogCaptureFixture
) -> None:
    gate.grant(["operation_logs"], method="api")
    sink = _FlakySink()
    collector = OperationLogCollector(gate, sink, adapter_mac="")
    collector.on_event(_event())
    await _until(lambda: "flushing to the sink failed" in caplog.text)
    for _ in range(50):
        collector.on_event(_event())
        await asyncio.sleep(0)
    assert caplog.text.count("flushing to the sink failed") == 1  # paused, not a storm
    assert collector.pending == 51  # nothing lost
    sink.fail = False
    assert await collector.flush() == 51  # an explicit flush (the agent's, run()'s) resumes it
    collector.on_event(_event())
    await _until(lambda: len(sink.records) == 52)
    collector.close()
