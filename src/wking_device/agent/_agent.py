"""The agent: scan, read speakers, collect under permits, store encrypted, keep going.

This module owns the supervisor loop that ties the layers together for one run: a scan each
cycle, sessions with the speakers it may look after, the collectors (each gated by its own
permit), the store's subscription to withdrawals, retention sweeps, the uploader's task, and a
summary. It does no Bluetooth, consent, encryption, storage or upload work itself: given an
uploader, it runs it as one more task that drains the store every ``upload_interval`` seconds.

Which speakers it connects to: the bound ones (``wking devices bind``), looked up at every
cycle so an unbind takes effect at once. With no bindings it connects to nobody on a real
adapter — a stranger's speaker is not ours to log — and, in a simulated world
(``connect_all=True``), to every simulated speaker.

A failing cycle (adapter gone, a speaker out of range, a full disk) is logged, turned into a
``diagnostics`` record where that is granted, and the next cycle runs; records the store could
not take stay buffered in their collector and are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wking_device.ble import discover, read_all
from wking_device.collect import (
    DeviceInfoCollector,
    DiagnosticsCollector,
    LocationCollector,
    OperationLogCollector,
    SoftwareInfoCollector,
    host_adapter_mac,
)
from wking_device.errors import BluetoothError, StorageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from wking_device.ble import BleBackend, EventBus
    from wking_device.collect import Collector
    from wking_device.config import Settings
    from wking_device.consent import ConsentGate
    from wking_device.store import RecordStore
    from wking_device.upload import Uploader

__all__ = ["Agent", "AgentSummary"]

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class AgentSummary:
    """What one agent run did.

    Attributes:
        cycles: Scan-and-read cycles completed.
        speakers_seen: Distinct W-KING speakers seen advertising.
        reads_ok: Successful information reads.
        reads_failed: Failed reads (after the BLE layer's retries).
        records: Records the store accepted, per collector category set.
        skipped: Inputs the collectors ignored for want of consent.
        errors: One line per cycle-level error.
        duration_s: Wall time of the run.
        upload: The uploader's counters (and its last error), or ``None`` without one.
    """

    cycles: int = 0
    speakers_seen: int = 0
    reads_ok: int = 0
    reads_failed: int = 0
    records: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    upload: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``wking agent run --json``."""
        return {
            "cycles": self.cycles,
            "speakers_seen": self.speakers_seen,
            "reads_ok": self.reads_ok,
            "reads_failed": self.reads_failed,
            "records": dict(sorted(self.records.items())),
            "skipped": self.skipped,
            "errors": list(self.errors),
            "duration_s": round(self.duration_s, 3),
            "upload": self.upload,
        }


class Agent:
    """Runs collection for a bounded or unbounded time.

    Args:
        gate: The installation's consent gate.
        store: The encrypted record store (the collectors' sink).
        settings: Settings (BLE timeouts and limits, location).
        backend: The bleak backend pair; ``None`` for the platform default.
        events: The operation-event bus the collectors listen to (default: the process bus).
        bound: Addresses of bound speakers, or a function returning them (called at every
            cycle, e.g. :meth:`wking_device.bindings.Bindings.addresses`, so unbinding a
            speaker while the agent runs stops its reads at the next cycle).
        connect_all: Connect to every W-KING speaker seen when nothing is bound (simulator).
        interval: Seconds between the starts of two cycles.
        scan_seconds: Seconds each scan lasts.
        adapter_mac: The host adapter's MAC (``None``: read from the system; ``""``: unknown).
        consent_poll: Seconds between checks of the ledger for other processes' changes, so a
            ``wking consent withdraw`` elsewhere stops collection within this time.
        sweep_every: Seconds between retention sweeps (one also runs at the start), so a
            long-running agent keeps nothing past its category's retention period.
        uploader: Drains the store to the collector (``None``: nothing is uploaded).
        upload_interval: Seconds between the uploader's drains.
    """

    def __init__(
        self,
        *,
        gate: ConsentGate,
        store: RecordStore,
        settings: Settings,
        backend: BleBackend | None = None,
        events: EventBus | None = None,
        bound: set[str] | Callable[[], set[str]] | None = None,
        connect_all: bool = False,
        interval: float = 5.0,
        scan_seconds: float | None = None,
        adapter_mac: str | None = None,
        consent_poll: float = 0.5,
        sweep_every: float = 3600.0,
        uploader: Uploader | None = None,
        upload_interval: float = 30.0,
    ) -> None:
        from wking_device.ble import get_event_bus  # noqa: PLC0415 - cheap, keeps the default lazy

        self._gate = gate
        self._store = store
        self._settings = settings
        self._backend = backend
        self._events = events if events is not None else get_event_bus()
        self._bound = bound
        self._connect_all = connect_all
        self._interval = interval
        self._scan_seconds = scan_seconds or min(settings.ble.scan_timeout, interval)
        self._consent_poll = consent_poll
        self._sweep_every = sweep_every
        self._seen: set[str] = set()
        self._uploader = uploader
        self._upload_interval = upload_interval
        if adapter_mac is None:
            adapter_mac = host_adapter_mac(adapter=settings.ble.adapter) or ""
        self.operations = OperationLogCollector(gate, store, adapter_mac=adapter_mac)
        self.device_info = DeviceInfoCollector(gate, store)
        self.software_info = SoftwareInfoCollector(gate, store)
        self.diagnostics = DiagnosticsCollector(gate, store)
        self.location = LocationCollector(gate, store, location=settings.location)
        self.summary = AgentSummary()

    @property
    def collectors(self) -> tuple[Collector, ...]:
        """Every collector of this agent."""
        return (
            self.operations,
            self.device_info,
            self.software_info,
            self.diagnostics,
            self.location,
        )

    async def run(self, duration: float | None = None) -> AgentSummary:
        """Run cycles until ``duration`` seconds have passed (or until cancelled).

        The package's log records are redacted (no speaker address, at any level) since
        ``import wking_device``, whatever logging set-up embeds the agent (DESIGN §4).

        Args:
            duration: Seconds to run; ``None`` runs until cancelled.

        Returns:
            The summary of the run (also on cancellation, via :attr:`summary`).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        detach: list[Callable[[], None]] = [
            self._store.attach(self._gate),
            self.operations.attach(self._events),
            self.diagnostics.attach(self._events),
        ]
        if self._gate.tampered is not None:
            _LOGGER.error("collecting nothing: %s", self._gate.tampered)
        watcher = asyncio.create_task(self._watch_consent(), name="wking-consent-watch")
        uploading = None
        if self._uploader is not None:
            uploading = asyncio.create_task(
                self._uploader.run(self._upload_interval), name="wking-upload"
            )
        try:
            await self._loop(None if duration is None else started + duration)
        finally:
            if uploading is not None:
                await self._stop_uploading(uploading)
            await self._shut_down(watcher, detach)
            self.summary.duration_s = loop.time() - started
        return self.summary

    async def _loop(self, deadline: float | None) -> None:
        loop = asyncio.get_running_loop()
        await self._sweep()
        swept = loop.time()
        self.software_info.snapshot()
        self.location.snapshot()
        while deadline is None or loop.time() < deadline:
            cycle_started = loop.time()
            try:
                await self._cycle(deadline)
            except Exception as exc:  # noqa: BLE001 - one failing cycle must not end the run
                self._failed("cycle", exc)
            self.summary.cycles += 1
            await self._flush()
            if loop.time() - swept >= self._sweep_every:
                await self._sweep()
                swept = loop.time()
            pause = self._interval - (loop.time() - cycle_started)
            if deadline is not None:
                pause = min(pause, deadline - loop.time())
            if pause > 0:
                await asyncio.sleep(pause)

    async def _stop_uploading(self, task: asyncio.Task[None]) -> None:
        """Stop the uploader (what it holds claimed becomes pending again) and keep its counts."""
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert self._uploader is not None
        self.summary.upload = {
            **self._uploader.counters.as_dict(),
            "last_error": self._uploader.last_error,
        }

    async def _shut_down(
        self, watcher: asyncio.Task[None], detach: list[Callable[[], None]]
    ) -> None:
        # A withdrawal made since the last look is carried out before the store is let go
        # (another process cannot purge while this one holds the store).
        try:
            self._gate.refresh()
        except Exception:  # a tampered ledger already closed the gate; keep shutting down
            _LOGGER.exception("re-reading the consent ledger failed")
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        for undo in detach:
            undo()
        for collector in self.collectors:
            # Each collector flushes what it holds and closes; one whose last flush fails
            # (a full disk) must not keep the others open or replace the run's outcome.
            unsent = collector.pending
            try:
                await asyncio.shield(collector.aclose())
            except Exception as exc:  # noqa: BLE001 - reported in the summary and the log
                _LOGGER.warning(
                    "%s: %d records not stored: %s", type(collector).__name__, unsent, exc
                )
                self.summary.errors.append(f"store: {unsent} records not stored: {exc}")
        self.summary.speakers_seen = len(self._seen)
        self.summary.skipped = sum(c.stats.skipped for c in self.collectors)
        for collector in self.collectors:
            self.summary.records[type(collector).__name__] = collector.stats.flushed

    async def _watch_consent(self) -> None:
        """Pick up grants and withdrawals made by other processes (``wking consent …``).

        A withdrawal found here revokes the permits at once: collectors stop and the store,
        attached to the gate, crypto-shreds the category.
        """
        while True:
            await asyncio.sleep(self._consent_poll)
            try:
                self._gate.refresh()
            except Exception:  # a tampered ledger closes the gate; keep watching
                _LOGGER.exception("re-reading the consent ledger failed")

    async def _cycle(self, deadline: float | None) -> None:
        self._gate.refresh()  # another process may have granted or withdrawn
        loop = asyncio.get_running_loop()
        seconds = self._scan_seconds
        if deadline is not None:
            seconds = max(0.1, min(seconds, deadline - loop.time()))
        try:
            found = await discover(
                seconds,
                backend=self._backend,
                events=self._events,
                adapter=self._settings.ble.adapter,
            )
        except BluetoothError as exc:
            self._failed("scan", exc)
            return
        self._seen.update(s.address.upper() for s in found)
        bound = {address.upper() for address in self._bound_addresses()}
        targets = [
            s for s in found if s.address.upper() in bound or (self._connect_all and not bound)
        ]
        if not targets or (deadline is not None and loop.time() >= deadline):
            return
        result = await read_all(
            targets,
            backend=self._backend,
            events=self._events,
            settings=self._settings.ble,
        )
        self.summary.reads_ok += len(result.infos)
        self.summary.reads_failed += len(result.errors)
        for info in result.infos.values():
            self.device_info.on_info(info)

    def _bound_addresses(self) -> set[str]:
        if self._bound is None:
            return set()
        if callable(self._bound):
            return self._bound()
        return self._bound

    async def _flush(self) -> None:
        for collector in self.collectors:
            try:
                await collector.flush()
            except StorageError as exc:
                # The collector keeps the batch; the next cycle retries it.
                self._failed("store", exc)

    async def _sweep(self) -> None:
        try:
            await self._store.sweep(now=time.time())
        except StorageError as exc:
            self._failed("retention", exc)

    def _failed(self, where: str, exc: BaseException) -> None:
        _LOGGER.warning("%s failed: %s", where, exc)
        self.summary.errors.append(f"{where}: {exc}")
        self.diagnostics.on_exception(exc, where=where)
