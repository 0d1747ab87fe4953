"""The uploader against the real reference receiver over TLS on 127.0.0.1 (no mocks of aiohttp/ssl).

Every test uses a real record store, a real consent gate and a real receiver; time is controlled
through the uploader's injected ``sleep`` so backoff and ``Retry-After`` cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
import trustme
from _upload_helpers import bare_server
from aiohttp import web
from tests._waiting import until

from wking_device.collect._install import open_installation_gate
from wking_device.config import Settings, UploadSettings, load_settings, resolve_paths
from wking_device.errors import (
    ConfigError,
    InsecureEndpoint,
    PinMismatch,
    TLSReason,
    TLSVerificationFailed,
    UploadRejected,
    UploadUnavailable,
    UsageError,
)
from wking_device.models import Record
from wking_device.receiver import FaultPlan, Receiver
from wking_device.store import open_store
from wking_device.upload import (
    LogsFramer,
    Timeouts,
    TLSOptions,
    Uploader,
    UploadTarget,
    open_uploader,
    parse_endpoint,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from wking_device.config import Paths
    from wking_device.consent import ConsentGate, Permit
    from wking_device.store import OpenedRecord, RecordStore

GRANTED = ("operation_logs", "device_info", "diagnostics", "mac_addresses", "location")
MAC = "AA:BB:CC:DD:EE:0F"
MAC_SPELLINGS = re.compile(
    r"aa[:_-]?bb[:_-]?cc[:_-]?dd[:_-]?ee[:_-]?0f|aabb\.ccdd\.ee0f", re.IGNORECASE
)


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


@pytest.fixture(name="store")
def fixture_store(paths: Paths, settings: Settings, gate: ConsentGate) -> Iterator[RecordStore]:
    store = open_store(paths, settings)
    detach = store.attach(gate)
    yield store
    detach()
    store.close()


class FakeTime:
    """An injected sleep: records every wait, returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def record(permit: Permit, category: str = "operation_logs", **body: Any) -> Record:
    return Record(
        category=category,
        consent_id=permit.consent_ids[category],
        policy_version=permit.policy_versions[category],
        body=body or {"op": "connect", "outcome": "ok"},
    )


async def fill(store: RecordStore, permit: Permit, n: int, **body: Any) -> list[str]:
    records = [record(permit, n=i, **body) for i in range(n)]
    for start in range(0, n, 500):
        await store.append(records[start : start + 500], permit)
    return [r.record_id for r in records]


def target(rx: Receiver | str, *, ca_file: Path | None = None, **kw: Any) -> UploadTarget:
    url = rx if isinstance(rx, str) else rx.endpoint
    ca = ca_file if ca_file is not None else (None if isinstance(rx, str) else rx.ca_file)
    settings = UploadSettings(**{"batch_size": 100, "concurrency": 3, **kw})
    resolved = UploadTarget.resolve(settings, endpoint=url, ca_file=ca)
    assert resolved is not None
    return resolved


def uploader(
    rx: Receiver | str,
    store: RecordStore,
    gate: ConsentGate,
    paths: Paths,
    *,
    clock: FakeTime | None = None,
    max_attempts: int | None = 8,
    progress: Callable[[Any], None] | None = None,
    timeouts: Timeouts | None = None,
    **kw: Any,
) -> Uploader:
    return open_uploader(
        target(rx, **kw),
        store=store,
        gate=gate,
        data_dir=paths.data_dir,
        max_attempts=max_attempts,
        timeouts=timeouts,
        sleep=(clock or FakeTime()).sleep,
        rng=random.Random(1),
        progress=progress,
    )


async def _run_agent_loop(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    store: RecordStore,
    gate: ConsentGate,
    paths: Paths,
    *,
    waits: int,
    max_attempts: int | None = 8,
) -> tuple[list[float], int]:
    """Run the agent's upload loop against a bare server until it has waited ``waits`` times.

    Returns the waits asked for (none is slept: the last one parks until the loop is
    cancelled) and the requests the server got.
    """
    asked: list[float] = []
    done = asyncio.Event()

    async def sleep(seconds: float) -> None:
        asked.append(seconds)
        if len(asked) >= waits:
            done.set()
            await asyncio.Event().wait()  # park until cancelled

    async with bare_server(paths.data_dir, handler) as server:
        up = open_uploader(
            target(server.url, ca_file=server.ca_file),
            store=store,
            gate=gate,
            data_dir=paths.data_dir,
            max_attempts=max_attempts,
            sleep=sleep,
        )
        task = asyncio.create_task(up.run(interval=10.0))
        async with asyncio.timeout(30):
            await done.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await up.aclose()
    return asked, len(server.requests)


def received_ids(rx: Receiver) -> list[str]:
    return [row["record_id"] for row in rx.export()]


@pytest.fixture(name="rx")
async def fixture_rx(tmp_path: Path) -> AsyncIterator[Receiver]:
    async with Receiver(tmp_path / "rx") as receiver:
        yield receiver


async def test_happy_path_delivers_everything_once_and_deletes_it(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    ids = await fill(store, permit, 1050)
    async with uploader(rx, store, gate, paths) as up:
        result = await up.drain()
    assert result.counters.sent == 1050
    assert result.counters.requests == 11  # 100 per request
    assert result.counters.bytes > 0
    assert sorted(received_ids(rx)) == sorted(ids)
    assert rx.stats.duplicates == 0
    stats = await store.stats()
    assert (stats.total, stats.pending, stats.claimed) == (0, 0, 0)
    rows = rx.export()
    assert {row["installation_id"] for row in rows} == {
        (paths.data_dir / "installation_id").read_text().strip()
    }
    assert set(orjson.loads(rows[0]["body"])) == {"n"}
    assert rows[0]["consent_id"] == permit.consent_ids["operation_logs"]


async def test_nothing_to_send_makes_no_request(
    rx: Receiver, store: RecordStore, gate: ConsentGate, paths: Paths
) -> None:
    async with uploader(rx, store, gate, paths) as up:
        result = await up.drain()
    assert result.counters.sent == 0
    assert rx.stats.requests == 0


# --- TLS refusals: nothing lost -----------------------------------------------------------------


async def _refused(
    store: RecordStore, up: Uploader, error: type[Exception]
) -> pytest.ExceptionInfo[Any]:
    before = await store.stats()
    with pytest.raises(error) as info:
        await up.drain()
    await up.aclose()
    after = await store.stats()
    assert (after.total, after.pending, after.claimed) == (before.total, before.total, 0)
    assert info.value.exit_code == 5  # type: ignore[attr-defined]
    return info


async def test_untrusted_ca_is_refused_and_nothing_is_lost(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    await fill(store, permit, 250)
    other_ca = Path(paths.data_dir / "other-ca.pem")
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    # the option wins over the setting: give the wrong CA on the "command line"
    up = open_uploader(
        UploadTarget.resolve(UploadSettings(), endpoint=rx.endpoint, ca_file=other_ca),  # type: ignore[arg-type]
        store=store,
        gate=gate,
        data_dir=paths.data_dir,
    )
    info = await _refused(store, up, TLSVerificationFailed)
    assert info.value.reason == TLSReason.UNKNOWN_CA
    assert rx.stats.requests == 0


async def test_wrong_host_name_is_refused(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    await fill(store, permit, 10)
    # the receiver's certificate names localhost, 127.0.0.1 and ::1, not 127.0.0.2
    async with bare_server(paths.data_dir, identities=("collector.example",)) as server:
        up = uploader(server.url, store, gate, paths, ca_file=server.ca_file)
        info = await _refused(store, up, TLSVerificationFailed)
        assert server.requests == []
    assert info.value.reason == TLSReason.HOSTNAME_MISMATCH


async def test_expired_certificate_is_refused(
    store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    await fill(store, permit, 10)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    async with bare_server(paths.data_dir, not_after=past) as server:
        up = uploader(server.url, store, gate, paths, ca_file=server.ca_file)
        info = await _refused(store, up, TLSVerificationFailed)
        assert server.requests == []
    assert info.value.reason == TLSReason.EXPIRED


async def test_pin_mismatch_is_refused(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    await fill(store, permit, 10)
    up = open_uploader(
        UploadTarget(
            endpoint=parse_endpoint(rx.endpoint),
            tls=TLSOptions(ca_file=rx.ca_file, pins=("sha256//" + "A" * 43 + "=",)),
        ),
        store=store,
        gate=gate,
        data_dir=paths.data_dir,
    )
    await _refused(store, up, PinMismatch)
    assert rx.stats.requests == 0


def test_http_is_refused_before_anything_is_opened() -> None:
    with pytest.raises(InsecureEndpoint):
        UploadTarget.resolve(UploadSettings(), endpoint="http://127.0.0.1:4318/v1/logs")
    with pytest.raises(ConfigError, match="https"):  # the settings refuse it when built
        UploadSettings(endpoint="http://127.0.0.1:4318")


# --- transient failures ---------------------------------------------------------------------------


async def test_500s_then_success_deliver_each_record_once(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    ids = await fill(store, permit, 600)
    clock = FakeTime()
    plan = FaultPlan(seed=3, status={500: 0.5})
    async with Receiver(tmp_path / "rx500", fault_plan=plan) as rx:
        async with uploader(rx, store, gate, paths, clock=clock, max_attempts=None) as up:
            result = await up.drain()
        assert rx.stats.faults > 0
        assert sorted(received_ids(rx)) == sorted(ids)
        assert rx.stats.duplicates == 0  # injected 500s store nothing: no re-delivery needed
    assert result.counters.sent == 600
    assert result.counters.retried >= 100
    assert clock.waits  # it backed off
    assert all(0 <= wait <= 60 for wait in clock.waits)
    assert (await store.stats()).total == 0


async def test_429_retry_after_is_waited_out(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    await fill(store, permit, 100)
    clock = FakeTime()
    plan = FaultPlan(seed=1, status={429: 0.6}, retry_after=42)
    async with Receiver(tmp_path / "rx429", fault_plan=plan) as rx:
        async with uploader(rx, store, gate, paths, clock=clock, max_attempts=None) as up:
            result = await up.drain()
        assert len(received_ids(rx)) == 100
    assert result.counters.sent == 100
    assert clock.waits
    assert all(wait >= 42 for wait in clock.waits)  # never earlier than asked


async def test_unavailable_for_too_long_stops_with_everything_pending(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    await fill(store, permit, 300)
    clock = FakeTime()
    async with Receiver(tmp_path / "rx503", fault_plan=FaultPlan(status={503: 1.0})) as rx:
        up = uploader(rx, store, gate, paths, clock=clock, max_attempts=3)
        with pytest.raises(UploadUnavailable, match="after 3 attempts"):
            await up.drain()
        await up.aclose()
    stats = await store.stats()
    assert (stats.total, stats.pending, stats.claimed) == (300, 300, 0)


async def test_connection_reset_mid_request_is_resent_and_deduplicated(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    ids = await fill(store, permit, 800)
    plan = FaultPlan(seed=5, reset_rate=0.4, reset_after_store=True, truncate_rate=0.2)
    async with Receiver(tmp_path / "rxreset", fault_plan=plan) as rx:
        async with uploader(rx, store, gate, paths, max_attempts=None) as up:
            result = await up.drain()
        assert rx.stats.faults > 0
        assert rx.stats.duplicates > 0  # stored, then the answer was lost: re-sent
        assert sorted(received_ids(rx)) == sorted(ids)  # yet each record once
    assert result.counters.sent == 800
    assert (await store.stats()).total == 0


async def test_receiver_restarted_mid_drain(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    ids = await fill(store, permit, 2000)
    data = tmp_path / "rxrestart"
    # 50 ms per request: 20 requests take about a second, the restart happens after two
    first = Receiver(data, fault_plan=FaultPlan(latency=0.05))
    await first.start()
    port = first.port
    receivers = [first]
    through_200 = asyncio.Event()
    down = asyncio.Event()

    def progress(counters: Any) -> None:
        if counters.sent >= 200:
            through_200.set()

    async def sleep(seconds: float) -> None:
        del seconds  # backoff time is not waited in the test
        if down.is_set() and len(receivers) == 1:
            again = Receiver(data, port=port)  # the same directory: same CA, same database
            await again.start()
            receivers.append(again)

    async def stop_first() -> None:
        await through_200.wait()
        await first.stop()
        down.set()

    up = open_uploader(
        target(first, concurrency=1),
        store=store,
        gate=gate,
        data_dir=paths.data_dir,
        max_attempts=None,
        sleep=sleep,
        progress=progress,
    )
    stopper = asyncio.create_task(stop_first())
    try:
        async with asyncio.timeout(60):
            result = await up.drain()
    finally:
        await up.aclose()
        stopper.cancel()
        for receiver in receivers:
            await receiver.stop()
    assert len(receivers) == 2  # it really was restarted while records were still pending
    assert result.counters.retried > 0
    assert result.counters.sent == 2000
    assert sorted(received_ids(receivers[1])) == sorted(ids)
    assert (await store.stats()).total == 0


# --- permanent errors ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_permanent_errors_stop_once_and_keep_everything(
    status: int, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    await fill(store, permit, 500)

    async def refuse(_: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text="no", content_type="text/plain")

    async with bare_server(paths.data_dir, refuse) as server:
        up = uploader(server.url, store, gate, paths, ca_file=server.ca_file)
        with pytest.raises(UploadRejected) as info:
            await up.drain()
        await up.aclose()
        # one request per worker at most: no retry of a permanent refusal
        assert len(server.requests) <= 3
    assert info.value.status == status
    assert f"HTTP {status}" in str(info.value)
    stats = await store.stats()
    assert (stats.total, stats.pending, stats.claimed) == (500, 500, 0)


async def test_the_agent_loop_reports_a_permanent_error_once_and_backs_off(
    store: RecordStore,
    gate: ConsentGate,
    permit: Permit,
    paths: Paths,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await fill(store, permit, 50)

    async def refuse(_: web.Request) -> web.StreamResponse:
        return web.Response(status=401)

    waits, _ = await _run_agent_loop(refuse, store, gate, paths, waits=5)
    errors = [r for r in caplog.records if "upload paused" in r.getMessage()]
    assert len(errors) == 1  # surfaced once, not at every attempt
    assert waits == sorted(waits)
    assert waits[-1] > waits[0]
    assert (await store.stats()).pending == 50


# --- consent at send time -------------------------------------------------------------------------


async def test_consent_withdrawn_between_claim_and_send_is_never_sent(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    await fill(store, permit, 300)
    keep = [record(permit, "device_info", model="WK-X10") for _ in range(5)]
    await store.append(keep, permit)
    real_claim = store.claim_opened  # the uploader's claim
    withdrawn: list[int] = []

    async def claim_then_withdraw(n: int, **kw: Any) -> list[OpenedRecord]:
        claimed = await real_claim(n, **kw)
        if claimed and not withdrawn:
            # the user withdraws while the uploader holds a claimed batch
            gate.withdraw(["operation_logs"], method="api")
            withdrawn.append(len(claimed))
        return claimed

    store.claim_opened = claim_then_withdraw  # type: ignore[method-assign]
    async with uploader(rx, store, gate, paths) as up:
        result = await up.drain()
    rows = rx.export()
    assert {row["category"] for row in rows} == {"device_info"}
    assert len(rows) == 5
    assert result.counters.purged >= withdrawn[0]
    stats = await store.stats()
    assert stats.total == 0  # the operation logs were shredded, device info sent


async def test_a_mixed_batch_sends_purges_and_defers_each_record_by_its_own_consent(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # every batch interleaves records the send-time check keeps, purges (a withdrawn category)
    # and defers (a sensitive category once the user is a minor): each gets its own fate
    kinds = ["operation_logs", "location", "diagnostics", "device_info"] * 30
    records = [record(permit, category, n=i) for i, category in enumerate(kinds)]
    await store.append(records, permit)
    real_claim = store.claim_opened

    async def claim_then_change(n: int, **kw: Any) -> list[OpenedRecord]:
        claimed = await real_claim(n, **kw)
        if claimed and not gate.minor:
            # after the claim: only the check right before the send can see it
            gate.set_minor(True)
            gate.withdraw(["diagnostics"], method="api")
        return claimed

    store.claim_opened = claim_then_change  # type: ignore[method-assign]
    async with uploader(rx, store, gate, paths, batch_size=50, concurrency=1) as up:
        result = await up.drain()
    of = {k: {r.record_id for r in records if r.category == k} for k in set(kinds)}
    assert set(received_ids(rx)) == of["operation_logs"] | of["device_info"]
    assert result.counters.sent == 60
    # the claimed ones purged at the check, the rest crypto-shredded with their category
    assert 0 < result.counters.purged <= len(of["diagnostics"])
    assert result.counters.deferred == len(of["location"]) == 30
    assert (await store.stats()).total == (await store.stats()).pending == 30
    gate.set_minor(False)
    store.claim_opened = real_claim  # type: ignore[method-assign]
    async with uploader(rx, store, gate, paths) as up:
        assert (await up.drain()).counters.sent == 30
    assert set(received_ids(rx)) == of["operation_logs"] | of["device_info"] | of["location"]


async def test_do_not_track_and_suspension_defer_and_keep(
    rx: Receiver, paths: Paths, settings: Settings, permit: Permit, gate: ConsentGate
) -> None:
    store = open_store(paths, settings)
    try:
        await fill(store, permit, 20)
        dnt_gate = open_installation_gate(paths, settings.replace(do_not_track=True))
        async with uploader(rx, store, dnt_gate, paths) as up:
            result = await up.drain()
        assert result.counters.sent == 0
        assert result.counters.deferred == 20
        assert rx.stats.requests == 0
        assert (await store.stats()).pending == 20
    finally:
        store.close()


async def test_cross_border_deidentifies_and_keeps_location(
    rx: Receiver,
    store: RecordStore,
    gate: ConsentGate,
    permit: Permit,
    paths: Paths,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spellings = [
        MAC,
        "aa-bb-cc-dd-ee-0f",
        "aabb.ccdd.ee0f",
        "AABBCCDDEE0F",
        "dev_AA_BB_CC_DD_EE_0F",
    ]
    with_macs = [
        record(
            permit,
            speaker_mac=MAC,
            adapter_mac="aa:bb:cc:dd:ee:0f",
            op="connect",
            # were MAC-shaped text ever to get past the collectors' scrubbing
            note=" ".join(spellings),
            nested={"list": [spellings[1], {"deep": spellings[4]}]},
        )
        for _ in range(10)
    ]
    await store.append(with_macs, permit)
    # the sink scrubs MAC-shaped text before sealing; the uploader must not rely on it alone
    await store.append([record(permit, "location", location="Berlin")], permit)
    async with uploader(rx, store, gate, paths, collector_region="US") as up:
        result = await up.drain()
    rows = rx.export()
    assert len(rows) == 10
    assert result.cross_border
    assert result.counters.deferred == 1  # the location record stays here
    for row in rows:
        assert not MAC_SPELLINGS.search(row["body"]), row["body"]
        body = orjson.loads(row["body"])
        assert body["speaker_mac"].startswith("mac:")
        assert body["speaker_mac"] == body["adapter_mac"]  # one MAC, one pseudonym
    assert "location" not in {row["category"] for row in rows}
    stats = await store.stats()
    assert stats.by_category == {"location": 1}
    assert not any(MAC_SPELLINGS.search(r.getMessage()) for r in caplog.records)


async def test_cross_border_with_consent_sends_raw(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    gate.grant(["cross_border_transfer"], method="api")
    await store.append([record(permit, speaker_mac=MAC)], permit)
    async with uploader(rx, store, gate, paths, collector_region="US") as up:
        result = await up.drain()
    assert not result.cross_border
    assert orjson.loads(rx.export()[0]["body"])["speaker_mac"] == MAC


# --- 413 and partial success ---------------------------------------------------------------


async def test_413_splits_down_to_one_record_and_sets_a_giant_aside(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    ids = await fill(store, permit, 64, pad="x" * 300)
    giant = record(permit, pad=random.Random(0).randbytes(6000).hex())
    await store.append([giant], permit)
    async with Receiver(tmp_path / "rx413", max_body=4000) as rx:
        async with uploader(rx, store, gate, paths, batch_size=65, concurrency=1) as up:
            result = await up.drain()
        assert sorted(received_ids(rx)) == sorted(ids)
        assert rx.stats.refused > 1  # it had to split
    assert result.counters.sent == 64
    assert (result.counters.rejected, result.counters.too_large) == (1, 1)
    stats = await store.stats()
    assert (stats.total, stats.rejected, stats.pending) == (1, 1, 0)
    exported = await store.export()
    assert [r.record_id for r in exported] == [giant.record_id]  # kept for inspection


async def test_a_receiver_taking_fewer_records_a_request_gets_them_all_in_smaller_ones(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # the receiver's cap on records per request (a few MiB of empty records were millions of
    # rows): a batch over it is a 413, which the uploader answers by splitting, losing nothing
    ids = await fill(store, permit, 100)
    async with Receiver(tmp_path / "rxcap", max_records=30) as rx:
        async with uploader(rx, store, gate, paths, batch_size=100, concurrency=1) as up:
            result = await up.drain()
        assert sorted(received_ids(rx)) == sorted(ids)
        assert rx.stats.refused >= 1  # 100, then halves of 50: refused; 25s stored
    assert result.counters.sent == 100
    assert result.counters.rejected == 0
    assert (await store.stats()).total == 0


async def test_a_413_is_paid_once_per_drain_not_once_per_batch(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # a collector that refuses bodies over its limit: once a body size was refused, the
    # drain's later batches are split before they are sent, not posted in vain each time
    # (on a slow uplink each refused body is upload time and bytes wasted)
    noise = random.Random(5)

    async def noisy(n: int) -> list[str]:  # ~350 B each, gzipped
        records = [record(permit, pad=noise.randbytes(300).hex()) for _ in range(n)]
        await store.append(records, permit)
        return [r.record_id for r in records]

    first_ids = await noisy(32)
    async with Receiver(tmp_path / "rx413b", max_body=4000) as rx:
        async with uploader(rx, store, gate, paths, batch_size=32, concurrency=1) as up:
            first = await up.drain()
            once = rx.stats.refused
            more = await noisy(32 * 8)
            second = await up.drain()
            refused = rx.stats.refused - once
        assert sorted(received_ids(rx)) == sorted(first_ids + more)
    assert once > 1
    assert first.counters.sent == 32
    assert second.counters.sent == 256
    # the eight batches of the second drain paid the first one's refusals and about one per
    # 8 requests that went through (the size refused is tried again after 8: it may have
    # grown); every batch paid them all before (8 x as much)
    assert refused < 4 * once
    assert (await store.stats()).total == 0


async def test_a_collector_refusing_every_record_as_too_large_does_not_strand_the_store(
    store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # a 413 for anything (a proxy with a tiny body limit, a hostile collector): records set
    # aside as too large are never sent again, so one record alone may be set aside (it may
    # be a giant), but a second in a row without a delivery between ends the drain with the
    # rest pending (it used to set aside the whole store, one record at a time)
    await fill(store, permit, 20)

    async def refuse(_: web.Request) -> web.StreamResponse:
        return web.Response(status=413, text="too large", content_type="text/plain")

    async with bare_server(paths.data_dir, refuse) as server:
        async with uploader(
            server.url, store, gate, paths, ca_file=server.ca_file, batch_size=10, concurrency=1
        ) as up:
            with pytest.raises(UploadRejected, match="413") as caught:
                await up.drain()
        assert len(server.requests) <= 2 * 10  # one batch's splits, not every record's
    assert caught.value.status == 413
    stats = await store.stats()
    assert (stats.total, stats.rejected, stats.pending, stats.claimed) == (20, 1, 19, 0)


async def test_413s_on_small_bodies_once_do_not_send_the_rest_of_the_drain_one_by_one(
    store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # a collector that answers 413 to a few requests, small ones included, then accepts
    # everything (a flaky proxy, a hostile collector): the size it refused is not believed
    # for ever, requests grow back as they go through
    ids = await fill(store, permit, 320)
    refusals = iter(range(6))

    async def flaky(_: web.Request) -> web.StreamResponse:
        if next(refusals, None) is not None:  # 64, 32, 16, 8, 4, 2 records refused
            return web.Response(status=413, text="too large", content_type="text/plain")
        return web.Response(body=b"", content_type="application/x-protobuf")

    async with bare_server(paths.data_dir, flaky) as server:
        async with uploader(
            server.url, store, gate, paths, ca_file=server.ca_file, batch_size=64, concurrency=1
        ) as up:
            result = await up.drain()
        got = len(server.requests)
    assert result.counters.sent == 320
    assert (await store.stats()).total == 0
    assert len(ids) == 320
    # one record per request for the rest of the drain would be ~320
    assert got < 120


async def test_a_request_too_slow_for_the_uplink_is_sent_in_smaller_ones(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # A slow uplink (the receiver reads 16 KiB per 0.1 s) and a 0.25 s request limit: 64
    # records (~4 reads) never get through whole, however often they are retried; 16 do.
    # The records must not wait until retention or the size cap takes them.
    noise = random.Random(7)

    async def noisy(n: int) -> list[str]:  # ~1 KB each that gzip cannot shrink
        records = [record(permit, pad=noise.randbytes(1000).hex()) for _ in range(n)]
        await store.append(records, permit)
        return [r.record_id for r in records]

    ids = await noisy(64)
    slow = FaultPlan(slow_read=0.1)
    limits = Timeouts(connect=5.0, read=5.0, total=0.25)
    async with Receiver(tmp_path / "rxslow", fault_plan=slow) as rx:
        async with uploader(
            rx, store, gate, paths, batch_size=64, concurrency=1, timeouts=limits
        ) as up:
            first = await up.drain()
            more = await noisy(64)
            second = await up.drain()
        assert sorted(received_ids(rx)) == sorted(ids + more)
    assert first.counters.sent == 64
    assert first.counters.retried >= 64  # the whole batch timed out, then went in parts
    assert second.counters.sent == 64
    # later batches start at the smaller size: no request of all 64 timed out first
    assert second.counters.retried < 64
    assert (await store.stats()).total == 0


async def test_after_a_slow_spell_requests_grow_back_to_the_batch_size(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    noise = random.Random(8)

    async def noisy(n: int) -> None:
        await store.append(
            [record(permit, pad=noise.randbytes(1000).hex()) for _ in range(n)], permit
        )

    limits = Timeouts(connect=5.0, read=5.0, total=0.25)
    rx = Receiver(tmp_path / "rxgrow", fault_plan=FaultPlan(slow_read=0.1))
    async with (
        rx,
        uploader(rx, store, gate, paths, batch_size=64, concurrency=1, timeouts=limits) as up,
    ):
        await noisy(64)
        await up.drain()  # the uplink is slow: smaller requests from now on
        rx._faults = None  # the uplink recovers (the receiver reads at full speed)
        requests = []
        for _ in range(6):
            await noisy(64)
            drained = await up.drain()
            assert drained.counters.sent == 64
            assert drained.counters.retried == 0
            requests.append(drained.counters.requests)
    # smaller requests while they keep going through, doubling after 8 in a row, back to one
    # request a batch
    assert requests[0] > 1
    assert requests == sorted(requests, reverse=True)
    assert requests[-1] == 1


async def test_partial_success_is_counted_and_kept_never_resent(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    await fill(store, permit, 30)
    await store.append([record(permit, "diagnostics", error="boom") for _ in range(3)], permit)
    plan = FaultPlan(reject_categories=frozenset({"diagnostics"}))
    async with Receiver(tmp_path / "rxpartial", fault_plan=plan) as rx:
        async with uploader(rx, store, gate, paths, batch_size=1000, concurrency=1) as up:
            first = await up.drain()
            second = await up.drain()
        assert rx.stats.rejected == 3
        assert rx.stats.requests == 1  # never re-sent
    assert (first.counters.sent, first.counters.rejected) == (30, 3)
    assert second.counters.requests == 0
    stats = await store.stats()
    assert stats.rejected == 33  # OTLP does not say which: the whole batch is kept aside
    assert stats.pending == 0


async def test_a_drain_cancelled_while_claiming_leaves_nothing_claimed(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # The agent stops its uploader by cancelling it; a claim already handed to the store's
    # thread completes there. What it took must be pending again in this process, not only
    # at the next open of the store (else `wking demo`'s last drain found nothing to send).
    await fill(store, permit, 50)
    async with uploader(rx, store, gate, paths) as up:
        for _ in range(20):
            task = asyncio.create_task(up.drain())
            for _ in range(3):
                await asyncio.sleep(0)  # the workers start and submit their claims
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for _ in range(200):  # bounded: 10 s
                stats = await store.stats()
                if stats.claimed == 0:
                    break
                await asyncio.sleep(0.05)
            assert stats.claimed == 0
        result = await up.drain()
    assert result.counters.sent == 50


async def test_cross_border_drops_the_stable_speaker_key(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # the speaker key links a speaker's records for good; the MAC pseudonyms of a de-identified
    # upload rotate per epoch, which the speaker key would defeat
    key = "spk:" + "ab" * 16
    await store.append([record(permit, speaker=key, speaker_mac=MAC, op="read")], permit)
    async with uploader(rx, store, gate, paths, collector_region="US") as up:
        result = await up.drain()
    assert result.cross_border
    body = orjson.loads(rx.export()[0]["body"])
    assert "speaker" not in body
    assert body["op"] == "read"
    assert key not in rx.export()[0]["body"]


async def test_the_speaker_key_never_leaves_this_machine(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # within the region too: a stable per-speaker key upstream would tell speakers apart without
    # the mac_addresses grant, and link them across a full local deletion (the installation id
    # rotates, the bindings do not)
    key = "spk:" + "cd" * 16
    await store.append(
        [
            record(permit, speaker=key, op="read"),
            record(permit, op="scan", detail={"speaker": "kept"}),  # only the top-level key goes
        ],
        permit,
    )
    async with uploader(rx, store, gate, paths) as up:
        result = await up.drain()
    assert not result.cross_border
    bodies = [orjson.loads(row["body"]) for row in rx.export()]
    assert all("speaker" not in body for body in bodies)
    assert {body["op"] for body in bodies} == {"read", "scan"}
    assert {"speaker": "kept"} in [body.get("detail") for body in bodies]
    assert key not in str(rx.export())


# --- batches prepared ahead of the workers ------------------------------------------------------


def _sent_ids(body: bytes) -> list[str]:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (  # noqa: PLC0415
        ExportLogsServiceRequest,
    )

    request = ExportLogsServiceRequest.FromString(body)  # aiohttp un-gzipped it
    return [
        attribute.value.string_value
        for resource in request.resource_logs
        for scope in resource.scope_logs
        for log in scope.log_records
        for attribute in log.attributes
        if attribute.key == "wking.record_id"
    ]


async def test_a_batch_claimed_ahead_is_checked_again_when_sent_and_withdrawn_never_sent(
    store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    ids = await fill(store, permit, 300)
    held = asyncio.Event()
    arrived = asyncio.Event()
    claims: list[list[str]] = []
    real_claim = store.claim_opened
    prefetched = asyncio.Event()

    async def counting_claim(n: int, **kw: Any) -> list[OpenedRecord]:
        rows = await real_claim(n, **kw)
        if rows:
            claims.append([row.record_id for row in rows])
        if len(claims) == 3:
            prefetched.set()
        return rows

    async def hold(_: web.Request) -> web.StreamResponse:
        arrived.set()
        await held.wait()
        return web.Response(body=b"", content_type="application/x-protobuf")

    store.claim_opened = counting_claim  # type: ignore[method-assign]
    async with bare_server(paths.data_dir, hold) as server:
        async with uploader(
            server.url, store, gate, paths, ca_file=server.ca_file, concurrency=2
        ) as up:
            draining = asyncio.create_task(up.drain())
            async with asyncio.timeout(30):
                # two requests in flight, a third batch claimed and encoded behind them
                await prefetched.wait()
                while len(server.requests) < 2:
                    arrived.clear()
                    await arrived.wait()
            gate.withdraw(["operation_logs"], method="api")
            held.set()
            async with asyncio.timeout(30):
                result = await draining
        sent = [rid for _, body in server.requests for rid in _sent_ids(body)]
    ahead = set(claims[2])
    assert len(ahead) == 100
    assert not ahead & set(sent)  # claimed before the withdrawal, never sent
    assert sorted(sent) == sorted(set(ids) - ahead)
    assert result.counters.purged == 100
    assert (await store.stats()).total == 0


async def test_at_most_one_batch_is_claimed_ahead_of_the_workers(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    await fill(store, permit, 1000)
    real_claim = store.claim_opened
    held_at_claim: list[int] = []

    async def watching_claim(n: int, **kw: Any) -> list[OpenedRecord]:
        held_at_claim.append((await store.stats()).claimed)
        return await real_claim(n, **kw)

    store.claim_opened = watching_claim  # type: ignore[method-assign]
    async with Receiver(tmp_path / "slow", fault_plan=FaultPlan(latency=0.02)) as slow:
        async with uploader(slow, store, gate, paths, concurrency=2) as up:
            result = await up.drain()
        assert len(set(received_ids(slow))) == 1000
    assert result.counters.sent == 1000
    # a claim starts only while at most two batches (the workers') are held: three at most
    assert max(held_at_claim) == 200


async def test_a_failed_delete_after_a_2xx_stops_the_drain_and_loses_nothing(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    from wking_device.errors import StorageError  # noqa: PLC0415

    ids = await fill(store, permit, 1000)
    real_ack = store.ack
    failed: list[int] = []

    async def failing_ack(record_ids: Any, **kw: Any) -> int:
        if not failed:
            failed.append(1)
            raise StorageError("disk I/O error")  # the store fails on the first delete
        return await real_ack(record_ids, **kw)

    store.ack = failing_ack  # type: ignore[method-assign]
    async with uploader(rx, store, gate, paths, concurrency=2) as up:
        with pytest.raises(StorageError):
            await up.drain()
        stats = await store.stats()
        assert stats.claimed == 0  # nothing left claimed: what was not deleted is pending
        assert stats.pending >= 100  # the batch whose delete failed is pending again
        assert up.counters.sent == 1000 - stats.pending
        result = await up.drain()
    assert result.counters.sent == stats.pending
    assert (await store.stats()).total == 0
    assert sorted(set(received_ids(rx))) == sorted(ids)


def _awaiting(task: asyncio.Task[Any]) -> list[str]:
    """The names of the coroutines a task is suspended in, outermost first."""
    names: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_code"):
        names.append(coro.cr_code.co_name)
        coro = coro.cr_await
    return names


class _HeldDeletes:
    """The real store, its deletes held until let go, so that a cancellation meets them in flight.

    As in the real store, a delete handed over runs to its end when its caller is cancelled (the
    store's thread does not look back).
    """

    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self.handed = asyncio.Event()
        self.go = asyncio.Event()
        self.deletes: list[asyncio.Future[int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def ack(self, record_ids: Any, *, sync: bool = True) -> int:
        ids = list(record_ids)

        async def delete() -> int:
            await self.go.wait()
            return await self._store.ack(ids, sync=sync)

        deleting = asyncio.ensure_future(delete())
        self.deletes.append(deleting)
        self.handed.set()
        return await asyncio.shield(deleting)


async def test_a_drain_cancelled_while_deleting_counts_what_it_deleted(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # The agent stops its uploader by cancelling it. A delete of records the collector accepted
    # runs to its end in the store's thread; the drain must wait for it and count those records
    # as sent (the agent's summary showed 17 received, 1 sent and 10 left: 6 deleted, uncounted).
    await fill(store, permit, 50)
    held = _HeldDeletes(store)
    async with uploader(rx, held, gate, paths) as up:  # type: ignore[arg-type]
        task = asyncio.create_task(up.drain())
        async with asyncio.timeout(10):
            await held.handed.wait()
        await until(lambda: "_acked" in _awaiting(task))  # everything sent; waits for deletes
        task.cancel()
        held.go.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.gather(*held.deletes, return_exceptions=True)
        stats = await store.stats()
    assert len(received_ids(rx)) == 50
    assert stats.total == 0
    assert up.counters.sent == 50


async def test_a_closed_uploader_refuses_to_drain_and_opens_nothing(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # it opened a new aiohttp session, sent and leaked it (nothing closed it again)
    up = uploader(rx, store, gate, paths)
    async with up:
        await up.drain()
    ids = await fill(store, permit, 5)
    with pytest.raises(UsageError, match="closed"):
        await up.drain()
    with pytest.raises(UsageError, match="closed"):
        await up.run(1.0)
    assert rx.stats.requests == 0
    stats = await store.stats()
    assert (stats.total, stats.pending, stats.claimed) == (len(ids), len(ids), 0)
    await up.aclose()  # still idempotent


async def test_a_withdrawal_while_the_batch_is_framed_stops_its_send(
    rx: Receiver,
    store: RecordStore,
    gate: ConsentGate,
    permit: Permit,
    paths: Paths,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the framing runs in a thread, after the last consent check: a withdrawal that returns
    # meanwhile (on the event loop) must still stop the send of that batch
    await fill(store, permit, 50)
    loop = asyncio.get_running_loop()
    framing = asyncio.Event()
    withdrawn = threading.Event()
    real_frame = LogsFramer.frame_framed

    def frame_while_withdrawn(self: LogsFramer, records: Any) -> bytes:
        if not withdrawn.is_set():
            loop.call_soon_threadsafe(framing.set)
            assert withdrawn.wait(30)
        return real_frame(self, records)

    monkeypatch.setattr(LogsFramer, "frame_framed", frame_while_withdrawn)
    async with uploader(rx, store, gate, paths) as up:
        draining = asyncio.create_task(up.drain())
        async with asyncio.timeout(30):
            await framing.wait()
        gate.withdraw(["operation_logs"], method="api")
        withdrawn.set()
        async with asyncio.timeout(30):
            result = await draining
    assert rx.export() == []  # nothing of the withdrawn category reached the collector
    assert result.counters.purged == 50
    assert result.counters.sent == 0
    assert (await store.stats()).total == 0


async def test_a_withdrawal_during_the_tls_handshake_stops_the_send(
    rx: Receiver, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # the last window: the body is framed, the request started, the connection not yet up (a
    # relay holds the collector's first TLS bytes); a withdrawal that returns then must still
    # keep the body from being written
    await fill(store, permit, 20)
    held = asyncio.Event()
    release = asyncio.Event()
    port = int(rx.endpoint.rsplit(":", 1)[1].split("/", 1)[0])

    async def pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, hold: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(65536):
                if hold and not release.is_set():
                    held.set()
                    await release.wait()
                writer.write(chunk)
                await writer.drain()
        writer.close()

    async def relay(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.gather(
            pipe(client_r, server_w, hold=False), pipe(server_r, client_w, hold=True)
        )

    listener = await asyncio.start_server(relay, "127.0.0.1", 0)
    url = f"https://127.0.0.1:{listener.sockets[0].getsockname()[1]}/v1/logs"
    try:
        async with uploader(url, store, gate, paths, ca_file=rx.ca_file) as up:
            draining = asyncio.create_task(up.drain())
            async with asyncio.timeout(30):
                await held.wait()
            gate.withdraw(["operation_logs"], method="api")
            release.set()
            async with asyncio.timeout(30):
                result = await draining
    finally:
        listener.close()
    assert rx.export() == []
    assert result.counters.purged == 20
    assert (await store.stats()).total == 0


async def test_the_agent_loop_waits_out_the_last_retry_after_before_the_next_drain(
    store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # the drain gives up after max_attempts on a 429: the next drain must not come before the
    # collector's Retry-After either (docs/upload.md: "never before Retry-After")
    await fill(store, permit, 10)

    async def busy(_: web.Request) -> web.StreamResponse:
        return web.Response(status=429, headers={"Retry-After": "600"})

    waits, requests = await _run_agent_loop(busy, store, gate, paths, waits=4, max_attempts=2)
    assert requests == 4  # two drains of 2 attempts each
    assert all(wait >= 600 for wait in waits), waits
    assert (await store.stats()).pending == 10


# -- a collector that never answers in time (a timeout after the body went out) ----------

_HUNG = Timeouts(connect=5.0, read=5.0, total=0.3)


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_a_collector_that_never_answers_in_time_ends_the_drain_with_all_pending(
    tmp_path: Path,
    store: RecordStore,
    gate: ConsentGate,
    permit: Permit,
    paths: Paths,
    concurrency: int,
) -> None:
    ids = await fill(store, permit, 16)
    clock = FakeTime()
    # it stores each request's records, then answers later than the client waits
    hung = FaultPlan(answer_latency=1.0)
    async with Receiver(tmp_path / "rxhung", fault_plan=hung) as rx:
        async with uploader(
            rx,
            store,
            gate,
            paths,
            clock=clock,
            batch_size=16 // concurrency,
            concurrency=concurrency,
            max_attempts=2,
            timeouts=_HUNG,
        ) as up:
            with pytest.raises(UploadUnavailable, match="after 2 attempts"):
                await up.drain()
            # every request that failed counts, the split ones included: two timeouts of each
            # batch (the whole, then a half), not log2(batch size) more before the budget
            # starts (a drain of 2,000-record batches at the default 60 s timeout used to
            # take 11 extra minutes to give up)
            assert up.counters.requests <= concurrency * 2
            assert clock.waits == []  # each waited out its timeout: no backoff before a half
            if concurrency == 1:
                assert up.counters.requests == 2
                assert up.counters.retried == 8  # the half sent again, not the one left unsent
            assert up._send_limit <= 8 // concurrency  # the next drain starts smaller
            stats = await store.stats()
            assert (stats.total, stats.pending, stats.claimed) == (16, 16, 0)
            rx._faults = None  # the collector recovers
            after = await up.drain()
        # what the hung collector stored after the client gave up, and what came again,
        # is in its store once
        got = received_ids(rx)
        assert sorted(set(got)) == sorted(ids)
        assert len(got) == len(set(got))
        assert rx.stats.duplicates > 0  # it stored them while the client gave up
    assert after.counters.sent == 16
    assert (await store.stats()).total == 0


async def test_a_withdrawal_while_a_timed_out_request_is_out_sends_no_half(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # the first request times out (its body went out); consent is withdrawn while it is
    # out: its halves are purged, never sent
    await fill(store, permit, 8)

    async def withdraw_once_it_arrived(rx: Receiver) -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while rx.stats.requests < 1:
            assert asyncio.get_running_loop().time() < deadline, "no request came"
            await asyncio.sleep(0.005)
        gate.withdraw(GRANTED, method="api")

    async with Receiver(tmp_path / "rxw", fault_plan=FaultPlan(latency=1.0)) as rx:
        async with uploader(
            rx, store, gate, paths, batch_size=8, concurrency=1, max_attempts=2, timeouts=_HUNG
        ) as up:
            withdrawing = asyncio.ensure_future(withdraw_once_it_arrived(rx))
            result = await up.drain()
            await withdrawing
        assert rx.stats.requests == 1  # the one that went out before the withdrawal
    assert result.counters.purged == 8
    assert result.counters.sent == 0
    assert result.counters.retried == 0  # nothing was sent again
    assert (await store.stats()).total == 0


async def test_two_workers_on_a_slow_uplink_share_the_smaller_size_and_lose_nothing(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # both workers' first requests time out while sent; the size both drop to is shared, and
    # every record arrives once
    noise = random.Random(9)
    records = [record(permit, pad=noise.randbytes(1000).hex()) for _ in range(128)]
    await store.append(records, permit)
    limits = Timeouts(connect=5.0, read=5.0, total=0.25)
    async with Receiver(tmp_path / "rxslow2", fault_plan=FaultPlan(slow_read=0.1)) as rx:
        async with uploader(
            rx, store, gate, paths, batch_size=64, concurrency=2, timeouts=limits
        ) as up:
            result = await up.drain()
            assert up._send_limit < 64
        got = received_ids(rx)
    assert sorted(got) == sorted(r.record_id for r in records)  # each once
    assert result.counters.sent == 128
    assert result.counters.retried >= 64
    assert (await store.stats()).total == 0


async def test_a_retry_whose_body_is_withheld_counts_as_one_re_send(
    store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # the first request gets a 503 (the connection closed); consent changes while the retry's
    # connection is set up, so its body is withheld and it is sent once more: the records
    # went out again once, and ``retried`` says so once
    await fill(store, permit, 10)
    answers = iter([503])

    async def flaky(_: web.Request) -> web.StreamResponse:
        status = next(answers, 200)
        response = web.Response(status=status, body=b"", content_type="application/x-protobuf")
        response.force_close()  # each attempt on a new connection
        return response

    accepted = 0

    async with bare_server(paths.data_dir, flaky) as server:
        port = int(server.url.split(":")[2].split("/")[0])

        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            if accepted == 2:  # the retry's connection: before its TLS handshake
                gate.grant(["software_info"], method="api")
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                except OSError:
                    pass
                finally:
                    dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        relay = await asyncio.start_server(forward, "127.0.0.1", 0)
        url = server.url.replace(str(port), str(relay.sockets[0].getsockname()[1]))
        try:
            async with uploader(url, store, gate, paths, ca_file=server.ca_file) as up:
                result = await up.drain()
        finally:
            relay.close()
            await relay.wait_closed()
    assert accepted == 3  # the first request, the withheld retry, the retry sent
    assert result.counters.sent == 10
    assert result.counters.requests == 2  # the withheld one is not a request
    assert result.counters.retried == 10


async def test_one_timeout_at_a_size_that_went_through_is_retried_not_halved(
    store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # a blip (one answer late) is no sign the requests are too large: once a request of that
    # size went through, the one that timed out is retried as it is, and later requests keep
    # their size (random timeouts of one request in ten used to shrink them to a few dozen
    # records on average, and to one or two at one in five)
    await fill(store, permit, 32)
    late = asyncio.Event()
    answered = 0

    async def one_late(_: web.Request) -> web.StreamResponse:
        nonlocal answered
        answered += 1
        if answered == 2:  # the second request: answered after the client gave up
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(late.wait(), 5)
        return web.Response(body=b"", content_type="application/x-protobuf")

    clock = FakeTime()
    limits = Timeouts(connect=5.0, read=5.0, total=0.5)
    async with bare_server(paths.data_dir, one_late) as server:
        try:
            async with uploader(
                server.url,
                store,
                gate,
                paths,
                ca_file=server.ca_file,
                clock=clock,
                batch_size=8,
                concurrency=1,
                timeouts=limits,
            ) as up:
                result = await up.drain()
                assert up._send_limit == 8
        finally:
            late.set()
    assert result.counters.sent == 32
    assert result.counters.requests == 5  # 4 of 8 records, and the late one once more
    assert result.counters.retried == 8
    assert len(clock.waits) == 1  # retried after a backoff, as any timeout
    assert (await store.stats()).total == 0


async def test_max_attempts_1_ends_the_drain_at_the_first_timeout_and_keeps_the_lesson(
    tmp_path: Path, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # max_attempts is the number of requests of a batch that may fail in a row: 1 means no
    # retry and no split; the smaller size is kept for the next drain, and a blip at a size
    # that went through does not lower it
    ids = await fill(store, permit, 16)
    clock = FakeTime()
    async with Receiver(tmp_path / "rx1", fault_plan=FaultPlan(answer_latency=1.0)) as rx:
        async with uploader(
            rx,
            store,
            gate,
            paths,
            clock=clock,
            batch_size=16,
            concurrency=1,
            max_attempts=1,
            timeouts=_HUNG,
        ) as up:
            with pytest.raises(UploadUnavailable, match=r"after 1 attempt \("):
                await up.drain()
            assert up.counters.requests == 1
            assert up._send_limit == 8
            assert (await store.stats()).pending == 16
            rx._faults = None
            after = await up.drain()
            assert (after.counters.sent, after.counters.requests) == (16, 2)
            more = await fill(store, permit, 8)
            rx._faults = FaultPlan(answer_latency=1.0)
            with pytest.raises(UploadUnavailable):
                await up.drain()
            assert up._send_limit == 8  # 8 went through: one late answer lowers nothing
            rx._faults = None
            last = await up.drain()
        got = received_ids(rx)
    assert sorted(set(got)) == sorted(ids + more)
    assert last.counters.sent == 8
    assert clock.waits == []
    assert (await store.stats()).total == 0


# -- the collector's 2xx answer: partial_success must never be read as "none rejected" -----


def _partial_response(rejected: int, message: str) -> bytes:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (  # noqa: PLC0415
        ExportLogsServiceResponse,
    )

    response = ExportLogsServiceResponse()
    response.partial_success.rejected_log_records = rejected
    response.partial_success.error_message = message
    return response.SerializeToString()


async def _answer_every_request_with(
    body: bytes, content_type: str, store: RecordStore, gate: ConsentGate, paths: Paths
) -> Any:
    async def answer(_: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type)

    async with bare_server(paths.data_dir, answer) as server:
        async with uploader(
            server.url, store, gate, paths, ca_file=server.ca_file, batch_size=10, concurrency=1
        ) as up:
            result = await up.drain()
        assert len(server.requests) == 1  # never re-sent
    return result


async def test_a_partial_success_with_a_long_message_is_still_a_partial_success(
    store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # a collector may explain each rejected record: an answer over 64 KiB is still read
    await fill(store, permit, 10)
    body = _partial_response(3, "record refused: bad attribute; " * 3000)  # ~93 KB
    assert len(body) > 64 * 1024
    result = await _answer_every_request_with(body, "application/x-protobuf", store, gate, paths)
    assert (result.counters.sent, result.counters.rejected) == (7, 3)
    stats = await store.stats()
    assert (stats.total, stats.rejected, stats.pending) == (10, 10, 0)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (_partial_response(3, "x" * (2 * 1024 * 1024)), "application/x-protobuf"),  # too long
        (b"\x0a\x05\x08\x03", "application/x-protobuf"),  # cut short
        (_partial_response(-1, ""), "application/x-protobuf"),  # a negative count
        (b"<html><body>OK</body></html>", "text/html"),  # not an OTLP answer
        (b'{"partialSuccess": {"rejectedLogRecords": "many"}}', "application/json"),
        (b'{"partialSuccess": {"rejectedLogRecords": "-2"}}', "application/json"),
        (b'["ok"]', "application/json"),
        (b'{"partialSuccess": ', "application/json"),
    ],
    ids=[
        "over-long",
        "truncated",
        "negative",
        "html",
        "json-nan",
        "json-negative",
        "json-list",
        "json-cut",
    ],
)
async def test_a_2xx_answer_that_cannot_be_read_ends_the_drain_with_the_records_pending(
    store: RecordStore,
    gate: ConsentGate,
    permit: Permit,
    paths: Paths,
    body: bytes,
    content_type: str,
) -> None:
    # whether the collector stored or rejected records is unknown: nothing is deleted as if
    # all were accepted, nothing set aside (an endpoint that is no OTLP collector, e.g. a web
    # page at the wrong path, would otherwise set aside the whole store), and the drain stops
    await fill(store, permit, 20)

    async def answer(_: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type)

    async with bare_server(paths.data_dir, answer) as server:
        async with uploader(
            server.url, store, gate, paths, ca_file=server.ca_file, batch_size=10, concurrency=1
        ) as up:
            with pytest.raises(UploadRejected) as caught:
                await up.drain()
            assert up.counters.sent == 0
            assert up.counters.rejected == 0
        assert len(server.requests) == 1  # the drain ended at the first such answer
    message = str(caught.value)
    assert "not an OTLP logs response" in message
    assert "stay pending" in message
    assert "\n" not in message
    assert len(message) < 400
    assert caught.value.status == 200
    stats = await store.stats()
    assert (stats.total, stats.rejected, stats.pending) == (20, 0, 20)


# -- a hostile or flaky collector (review of the per-request answers) ----------------------------


async def test_a_413_for_a_record_no_larger_than_a_body_delivered_keeps_it_pending(
    store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # a collector (or proxy) that took 8-record bodies, then answers 413 to everything (a
    # reload, a hostile collector): a single record no larger than a body it took in this
    # drain is not too large, and is not set aside for good; the drain ends, it stays pending
    await fill(store, permit, 16)
    answered: list[int] = []

    async def took_then_refuses(request: web.Request) -> web.StreamResponse:
        answered.append(len(_sent_ids(await request.read())))
        if len(answered) == 1:
            return web.Response(body=b"", content_type="application/x-protobuf")
        return web.Response(status=413, text="too large", content_type="text/plain")

    async with (
        bare_server(paths.data_dir, took_then_refuses) as server,
        uploader(
            server.url, store, gate, paths, ca_file=server.ca_file, batch_size=8, concurrency=1
        ) as up,
    ):
        with pytest.raises(UploadRejected, match="413") as caught:
            await up.drain()
        counters = up.counters
    assert answered[0] == 8
    assert answered[-1] == 1  # split down to one record
    assert caught.value.status == 413
    assert "\n" not in str(caught.value)
    assert (counters.sent, counters.rejected, counters.too_large) == (8, 0, 0)
    stats = await store.stats()
    assert (stats.total, stats.rejected, stats.pending, stats.claimed) == (8, 0, 8, 0)


async def test_a_withdrawal_while_a_refused_request_is_out_sends_no_half(
    store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # consent is withdrawn while the collector answers 413: the halves are purged, not sent
    await fill(store, permit, 8)

    async def withdraw_then_refuse(_: web.Request) -> web.StreamResponse:
        gate.withdraw(GRANTED, method="api")
        return web.Response(status=413, text="too large", content_type="text/plain")

    async with bare_server(paths.data_dir, withdraw_then_refuse) as server:
        async with uploader(
            server.url, store, gate, paths, ca_file=server.ca_file, batch_size=8, concurrency=1
        ) as up:
            result = await up.drain()
        assert len(server.requests) == 1
    assert (result.counters.purged, result.counters.sent, result.counters.rejected) == (8, 0, 0)
    assert (result.counters.requests, result.counters.retried) == (1, 0)
    assert (await store.stats()).total == 0


async def test_junk_2xx_then_good_answers_lose_nothing_and_count_right(
    store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    ids = await fill(store, permit, 30)
    answers = iter([b"\x0a\x05\x08"])  # the first answer is cut short, the rest are empty
    got: list[str] = []

    async def junk_once(request: web.Request) -> web.StreamResponse:
        body = next(answers, b"")
        if not body:
            got.extend(_sent_ids(await request.read()))
        return web.Response(body=body, content_type="application/x-protobuf")

    async with bare_server(paths.data_dir, junk_once) as server:
        async with uploader(
            server.url, store, gate, paths, ca_file=server.ca_file, batch_size=10, concurrency=2
        ) as up:
            with pytest.raises(UploadRejected, match="not an OTLP logs response"):
                await up.drain()
            assert up.counters.sent <= 20
            assert up.counters.rejected == 0
            assert (await store.stats()).claimed == 0
            result = await up.drain()
            total = up.counters
        assert total.requests == len(server.requests)
    assert sorted(set(got)) == sorted(ids)
    assert (total.sent, total.rejected, total.too_large) == (30, 0, 0)
    assert result.counters.retried == 0
    assert (await store.stats()).total == 0


@pytest.mark.parametrize("seed", range(4))
async def test_random_hostile_answers_with_concurrency_never_delete_what_was_not_accepted(
    seed: int, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # each request gets its own answer: 200, 413, 503, a partial success counting more
    # records than the batch, 200 with junk. Whatever the order: a record deleted here was
    # in a request answered with a plain 2xx; one set aside was in a request answered with a
    # partial success or alone with a 413; nothing stays claimed; the counters add up.
    ids = await fill(store, permit, 120)
    rng = random.Random(seed)
    accepted: set[str] = set()
    kept: set[str] = set()
    seen: list[str] = []
    bodies = {
        "ok": b"",
        "partial": _partial_response(10**9, "no \x1b[31mred\x1b[0m <b>markup</b>\nhere"),
        "junk": b"\x0a\x05\x08",
    }

    async def hostile(request: web.Request) -> web.StreamResponse:
        sent = _sent_ids(await request.read())
        answer = rng.choices(["ok", "413", "503", "partial", "junk"], [6, 3, 2, 1, 1])[0]
        if not (accepted or kept or seen):
            answer = "junk"  # a drain ends so at least once
        seen.append(answer)
        if answer == "413":
            if len(sent) == 1:
                kept.update(sent)
            return web.Response(status=413, text="\x1b[2Jbig\r\nX", content_type="text/plain")
        if answer == "503":
            return web.Response(status=503, text="busy", content_type="text/plain")
        if answer == "ok":
            accepted.update(sent)
        elif answer == "partial":
            kept.update(sent)
        return web.Response(body=bodies[answer], content_type="application/x-protobuf")

    errors: list[str] = []
    async with bare_server(paths.data_dir, hostile) as server:
        async with uploader(
            f"{server.url}?api_key=hunter2",
            store,
            gate,
            paths,
            ca_file=server.ca_file,
            batch_size=16,
            concurrency=3,
        ) as up:
            for _ in range(60):
                try:
                    await up.drain()
                except (UploadRejected, UploadUnavailable) as exc:
                    errors.append(str(exc))
                stats = await store.stats()
                assert stats.claimed == 0
                if stats.pending == 0:
                    break
            counters = up.counters
        # a request in flight when a drain ended (cancelled) may never have reached the server
        assert 0 <= counters.requests - len(server.requests) <= 3 * len(errors)
    assert stats.pending == 0
    left = {r.record_id for r in await store.export()}
    deleted = set(ids) - left
    assert deleted <= accepted  # nothing deleted that a plain 2xx did not accept
    assert left <= kept  # everything left was refused alone or in a partial success
    assert counters.sent == len(deleted)
    assert counters.rejected == stats.rejected == len(left)
    assert counters.too_large <= counters.rejected
    assert errors
    for message in errors:
        assert not set(message) & {"\n", "\r", "\x1b"}
        assert "hunter2" not in message


@pytest.mark.parametrize(
    "answer",
    [
        web.Response(status=413, text="too large", content_type="text/plain"),
        web.Response(body=b"\x0a\x05\x08", content_type="application/x-protobuf"),
    ],
    ids=["413-always", "unreadable-2xx"],
)
async def test_the_agent_loop_backs_off_after_the_new_rejections(
    answer: web.Response, store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # a collector refusing every record as too large, or answering junk 2xx: each drain ends
    # with UploadRejected after a bounded number of requests, and the loop waits longer each
    # time (it does not spin)
    await fill(store, permit, 200)
    body, status, content_type = answer.body, answer.status, answer.content_type

    async def same(_: web.Request) -> web.StreamResponse:
        return web.Response(body=body, status=status, content_type=content_type)

    waits, requests = await _run_agent_loop(same, store, gate, paths, waits=6)
    assert waits == sorted(waits)
    assert waits[-1] >= 16 * waits[0]
    # batches of 100, 3 workers: at most a batch's splits per worker per drain
    assert requests <= 6 * 3 * 2 * 100
    stats = await store.stats()
    assert stats.claimed == 0
    assert stats.pending + stats.rejected == 200
    assert stats.rejected <= len(waits)  # a record at most set aside per drain


async def test_a_retry_split_because_another_worker_got_a_413_counts_as_a_re_send(
    store: RecordStore, gate: ConsentGate, permit: Permit, paths: Paths
) -> None:
    # two workers: one batch is refused (413), the other answered 503; the second one's retry
    # is as large as the body refused, so it is split before it is sent: its halves are its
    # records sent again after a retryable failure (``retried``)
    await fill(store, permit, 16)
    full: list[web.Request] = []
    both = asyncio.Event()
    half_sent = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        n = len(_sent_ids(await request.read()))
        if n == 8 and len(full) < 2:
            full.append(request)
            if len(full) == 2:
                both.set()
            async with asyncio.timeout(10):
                await both.wait()
            sizes = [int(r.headers["Content-Length"]) for r in full]
            mine = int(request.headers["Content-Length"])
            if request is full[sizes.index(min(sizes))]:
                return web.Response(status=413, text="too large", content_type="text/plain")
            assert mine >= min(sizes)
            async with asyncio.timeout(10):
                await half_sent.wait()
            return web.Response(status=503, text="busy", content_type="text/plain")
        half_sent.set()
        return web.Response(body=b"", content_type="application/x-protobuf")

    async with bare_server(paths.data_dir, answer) as server:
        async with uploader(
            server.url, store, gate, paths, ca_file=server.ca_file, batch_size=8, concurrency=2
        ) as up:
            result = await up.drain()
        sizes = [len(_sent_ids(body)) for _, body in server.requests]
    assert sorted(sizes) == [4, 4, 4, 4, 8, 8]  # the 503's retry was split, not sent again whole
    assert result.counters.sent == 16
    assert result.counters.retried == 8
    assert (await store.stats()).total == 0
