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

Persistent sessions (issue 10): up to ``keep_connected`` of those speakers (by default one fewer
than ``ble.max_connections``, so one slot stays free for polling) are kept connected between
cycles by a :class:`~wking_device.ble.SessionKeeper`, subscribed to their notifications and
reconnected with backoff when the link drops; their state changes, button presses and battery
levels reach the operation-log collector as ``NOTIFY`` events (kept only under its permit). Each
cycle reads a kept speaker over its open link (one that is reconnecting counts as a failed read);
the rest are polled as before (connect, read, disconnect). Sessions are closed when nothing the
agent could keep is granted (or Do Not Track is on), when a speaker is unbound, and at the end.
When the kept sessions hold every connection slot a poll could use (an adapter managing fewer
connections than ``max_connections``), no slot comes free within the cycle: its polls are skipped
at once and counted (``reads_no_slot``, in ``reads_failed`` too) rather than each waiting
``ble.slot_timeout``, with one log line when that starts and one when it ends. The agent keeps
its sessions all the same (their notifications need the open link).

Supervision: each part — the cycle (discovery and speaker sessions), each speaker's read, each
collector's flush, the uploader, the retention sweep and the consent watch — fails alone. An
unexpected exception in one is logged once with its type (again only after it recovered or failed
differently), counted per part (:attr:`Agent.failures`), turned into a ``diagnostics`` record where
that is granted, and the part is retried with a backoff that doubles up to ``max_backoff``; it
never ends the run. One speaker whose read raises is an error for that speaker only. Records the
store could not take stay buffered in their collector and are retried. With ``status_file``, a
small JSON file (counts and timestamps, no address or speaker name, see
:mod:`wking_device.agent._status`) is rewritten atomically after every cycle for ``wking agent
status``. Two failures end the run instead
(after the usual shutdown, then raised from :meth:`Agent.run`): no adapter at the first scan
(``AdapterUnavailable``), and a consent ledger that fails verification (``LedgerTampered``).

Stopping: :meth:`Agent.stop` sets a flag that every step of the loop races against, so a stop is
obeyed even when a cancellation is lost inside a Bluetooth library (Python 3.11's
``asyncio.wait_for`` can swallow one); the duration is enforced the same way, so a connect still
in progress half a second after it ends is cancelled. A step that ignores its cancellation is left
behind after ``stop_grace`` seconds. When nothing the agent could keep is granted (or Do Not
Track is on), it scans and connects to nobody.

Where the parts live: this module owns :class:`Agent`'s arguments and state, its public methods
(the run, the loop, the shutdown, :meth:`Agent.tally`, :meth:`Agent.status`), the status file's
writes and :class:`AgentSummary`. One cycle (scan, kept sessions, polled reads) is its base
class's, :class:`~wking_device.agent._cycle.AgentCycle`; the consent watch (ledger, Do Not Track,
tampering) is :class:`~wking_device.agent._consent_watch.AgentConsent`'s; the steps cut short on
a stop, the supervised parts and their failures are
:class:`~wking_device.agent._supervision.AgentSupervision`'s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import wking_device  # annotations name wking_device.X: get_type_hints loads X lazily
from wking_device.agent._consent_watch import _ConfigDoNotTrack
from wking_device.agent._cycle import AgentCycle
from wking_device.agent._status import StatusWriter
from wking_device.agent._supervision import _Interrupted
from wking_device.ble import (
    BleBackend,
    EventBus,
    SessionKeeper,
)
from wking_device.collect import (
    Collector,
    DeviceInfoCollector,
    DiagnosticsCollector,
    LocationCollector,
    OperationLogCollector,
    SoftwareInfoCollector,
    host_adapter_mac,
)
from wking_device.config import Paths, Settings, _dnt_in_environment
from wking_device.consent import ConsentGate
from wking_device.errors import (
    AdapterUnavailable,
    LedgerTampered,
    UsageError,
)

if TYPE_CHECKING:
    import wking_device.store
    import wking_device.upload

__all__ = ["Agent", "AgentSummary"]

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class AgentSummary:
    """What one agent run did.

    Attributes:
        cycles: Scan-and-read cycles completed.
        speakers_seen: Distinct W-KING speakers seen advertising (counted up to 4096).
        speakers_read: Distinct speakers read successfully at least once.
        reads_ok: Successful information reads.
        reads_failed: Failed reads (after the BLE layer's retries), including those not
            attempted for want of a slot (``reads_no_slot``).
        reads_no_slot: Polled reads not attempted because this agent's kept sessions held every
            connection slot of the adapter (counted in ``reads_failed`` too).
        sessions_kept: Speakers kept connected after the last cycle (the others are polled).
        reconnects: Kept speakers connected again after their link went down.
        records: Records the store accepted, per collector category set.
        skipped: Inputs the collectors ignored for want of consent.
        errors: One line per cycle-level error, without addresses, keys or the names of the
            speakers it connected to (as in the status file).
        duration_s: Wall time of the run.
        upload: The uploader's counters (and its last error, scrubbed as ``errors``), or
            ``None`` without one.
        failures: Unexpected failures per supervised part (``cycle``, ``speaker``, ``store``,
            ``upload``, ``retention``, ``consent``).
    """

    cycles: int = 0
    speakers_seen: int = 0
    speakers_read: int = 0
    reads_ok: int = 0
    reads_failed: int = 0
    reads_no_slot: int = 0
    sessions_kept: int = 0
    reconnects: int = 0
    records: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    upload: dict[str, Any] | None = None
    failures: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of ``wking agent run --json``."""
        return {
            "cycles": self.cycles,
            "speakers_seen": self.speakers_seen,
            "speakers_read": self.speakers_read,
            "reads_ok": self.reads_ok,
            "reads_failed": self.reads_failed,
            "reads_no_slot": self.reads_no_slot,
            "sessions_kept": self.sessions_kept,
            "reconnects": self.reconnects,
            "records": dict(sorted(self.records.items())),
            "skipped": self.skipped,
            "errors": list(self.errors),
            "duration_s": round(self.duration_s, 3),
            "upload": self.upload,
            "failures": dict(sorted(self.failures.items())),
        }


def _seconds(name: str, value: object, *, zero: bool = False) -> float:
    """``value`` as seconds: a finite number more than 0 (with ``zero``, 0 or more).

    Raises:
        UsageError: It is not (a bool, a string, NaN, infinite, negative, or 0 without ``zero``).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (value >= 0 if zero else value > 0)
        or not value < float("inf")
    ):
        wanted = "0 or more" if zero else "a positive number of"
        raise UsageError(f"{name} must be {wanted} seconds, not {value!r}")
    return float(value)


class Agent(AgentCycle):
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
        paths: The installation's paths. When given, its ``config.toml`` is watched (with the
            consent poll): ``do_not_track = true`` written there stops collection at once, and
            taking it out again resumes it.
        stop_grace: Seconds a step cut short by :meth:`stop` or the end of the duration gets to
            unwind before the loop leaves it behind.
        uploader: Drains the store to the collector (``None``: nothing is uploaded).
        upload_interval: Seconds between the uploader's drains.
        status_file: Where to keep the status for ``wking agent status`` (``None``: nowhere).
        max_backoff: The longest pause before a failing part is retried, seconds.
        keep_connected: Speakers kept connected between cycles (default
            ``settings.ble.max_connections - 1``; 0 polls every speaker every cycle).

    Raises:
        UsageError: A period (``interval``, ``scan_seconds``, ``consent_poll``, ``sweep_every``,
            ``upload_interval``, ``max_backoff``) is not a finite number of seconds more than
            0, or ``stop_grace`` is negative or not finite.

    Do Not Track while running: it is on when this process's environment, ``config.toml`` (with
    ``paths``), ``settings`` or another process says so (a ``dnt_on`` recorded in the ledger).
    ``settings`` saying on where the file and the environment do not (settings made in code) keep
    it on for the whole run, whatever the file says later. Once another
    process turned it on, it stays on for the rest of this run: a ``dnt_off`` recorded elsewhere
    (any command run without the variable) never restarts collection.
    """

    def __init__(
        self,
        *,
        gate: ConsentGate,
        store: wking_device.store.RecordStore,
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
        paths: Paths | None = None,
        stop_grace: float = 2.0,
        uploader: wking_device.upload.Uploader | None = None,
        upload_interval: float = 30.0,
        status_file: Path | None = None,
        max_backoff: float = 60.0,
        keep_connected: int | None = None,
    ) -> None:
        from wking_device.ble import get_event_bus  # noqa: PLC0415 - cheap, keeps the default lazy

        self._gate = gate
        self._store = store
        self._settings = settings
        self._backend = backend
        self._events = events if events is not None else get_event_bus()
        self._bound = bound
        self._connect_all = connect_all
        # the periods are checked as the command line and config.toml check theirs (0 or NaN
        # would spin the loop), before anything subscribes to the gate
        self._interval = _seconds("interval", interval)
        self._scan_seconds = (
            _seconds("scan_seconds", scan_seconds)
            if scan_seconds is not None
            else min(settings.ble.scan_timeout, self._interval)
        )
        self._consent_poll = _seconds("consent_poll", consent_poll)
        self._sweep_every = _seconds("sweep_every", sweep_every)
        self._seen: set[str] = set()
        self._read: set[str] = set()
        self._stop_grace = _seconds("stop_grace", stop_grace, zero=True)
        self._stop = asyncio.Event()
        self._deadline: float | None = None
        self._max_cycles: int | None = None
        self._failure: LedgerTampered | AdapterUnavailable | None = None
        self._scanned = False
        self._stragglers: set[asyncio.Task[Any]] = set()
        self._ran = False  # run() was called: an Agent runs once
        # Do Not Track: this process's own settings (environment, and config.toml re-read when
        # watched) and a latch for another process's dnt_on (kept until the run ends).
        self._own_dnt: Callable[[], bool] = (
            _ConfigDoNotTrack(paths, settings)
            if paths is not None
            # settings made in code: the environment still counts (no source switches off
            # what another switched on)
            else lambda: settings.do_not_track or _dnt_in_environment()
        )
        self._dnt_latched = False
        self._dnt_applied = gate.do_not_track
        # ledger entries this run has looked at: the gate also re-reads the ledger by itself
        # (on permit checks), so "new since the last poll" is kept here, not asked of the gate
        self._history_seen = len(gate.history())
        self._uploader = uploader
        self._upload_interval = _seconds("upload_interval", upload_interval)
        self._max_backoff = _seconds("max_backoff", max_backoff)
        self._reported: dict[str, str] = {}  # part -> the failure last logged for it
        self._streak: dict[str, int] = {}  # part -> consecutive failures
        self._last_errors: list[dict[str, Any]] = []
        self._names: set[str] = set()  # speakers' names: kept out of the status file
        self._status = StatusWriter(status_file) if status_file is not None else None
        self._started_at = time.time()
        self._shown_active: list[str] = []
        self._no_slot: str | None = None
        """The adapters whose every slot this agent's kept sessions held at the last look."""
        if adapter_mac is None:
            adapter_mac = host_adapter_mac(adapter=settings.ble.adapter) or ""

        # records go to the store as they come (eager); a failing store is counted and logged
        # once, as for the flush after each cycle, which retries what is kept
        def failed(exc: Exception) -> None:
            self._failed("store", exc)

        self.operations = OperationLogCollector(
            gate, store, adapter_mac=adapter_mac, on_error=failed
        )
        self.device_info = DeviceInfoCollector(gate, store, on_error=failed)
        self.software_info = SoftwareInfoCollector(gate, store, on_error=failed)
        self.diagnostics = DiagnosticsCollector(gate, store, on_error=failed)
        self.location = LocationCollector(gate, store, location=settings.location, on_error=failed)
        self.summary = AgentSummary()
        self.sessions = SessionKeeper(
            backend=backend, events=self._events, settings=settings.ble, slots=keep_connected
        )
        """The speakers kept connected between cycles."""

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

    def stop(self) -> None:
        """Ask the run to end: the current step is cut short, then the usual shutdown runs.

        Safe to call at any time, also before :meth:`run` (which then only shuts down) and from
        a signal handler installed with ``loop.add_signal_handler``.
        """
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    async def run(
        self, duration: float | None = None, *, cycles: int | None = None
    ) -> AgentSummary:
        """Run cycles until the duration or the cycles run out, :meth:`stop`, or cancellation.

        The package's log records are redacted (no speaker address, at any level) since
        ``import wking_device``, whatever logging set-up embeds the agent (DESIGN §4).

        Args:
            duration: Seconds to run; ``None`` runs until stopped or cancelled. A scan, connect
                or read still in progress half a second after it ends is cancelled.
            cycles: Scan-and-read cycles to run (at least 1); ``None``: no limit. The run ends
                right after the last one (no pause), whichever of ``duration`` and ``cycles``
                comes first.

        Returns:
            The summary of the run (also on cancellation, via :attr:`summary`).

        Raises:
            LedgerTampered: The consent ledger failed verification (at the start or while
                running); collection stopped, the summary is in :attr:`summary`.
            AdapterUnavailable: The first scan found no usable Bluetooth adapter.
            UsageError: ``cycles`` is less than 1, ``duration`` is not a number of seconds
                (negative, NaN, infinite), or this agent ran (or runs) already: an
                ``Agent`` runs once (its collectors and sessions close when the run ends).
        """
        if cycles is not None and cycles < 1:
            raise UsageError(f"cycles must be at least 1, not {cycles}")
        if duration is not None:
            duration = _seconds("duration", duration, zero=True)
        if self._ran:
            raise UsageError(
                "this Agent ran already: an Agent runs once",
                remedy="make a new Agent for another run",
            )
        self._ran = True
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._deadline = None if duration is None else started + duration
        self._max_cycles = cycles
        detach: list[Callable[[], None]] = [
            self._store.attach(self._gate),
            self.operations.attach(self._events),
            self.diagnostics.attach(self._events),
        ]
        watcher = asyncio.create_task(self._watch_consent(), name="wking-consent-watch")
        uploading = None
        self._started_at = time.time()
        self._write_status("running")
        if self._uploader is not None:
            uploader = self._uploader
            uploading = asyncio.create_task(
                self._supervise("upload", lambda: uploader.run(self._upload_interval)),
                name="wking-upload",
            )
        try:
            self._check_tampered()
            if self._failure is None:
                self._apply_do_not_track()
                await self._loop()
        finally:
            # a cancellation of the run while it waits for its own tasks to end is raised once
            # the shutdown is done, not taken for theirs
            cancelled = False
            if uploading is not None:
                cancelled = await self._stop_uploading(uploading)
            cancelled = await self._shut_down(watcher, detach) or cancelled
            self.summary.duration_s = loop.time() - started
            self._write_status("stopped")
        if cancelled:
            raise asyncio.CancelledError
        if self._failure is not None:
            raise self._failure
        return self.summary

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._ended():
            return  # stopped before it started: the run only shuts down
        await self._sweep()
        swept = loop.time()
        if self._ended():
            return  # stopped during the sweep: no snapshot either
        self.software_info.snapshot()
        self.location.snapshot()
        while not self._ended():
            cycle_started = loop.time()
            pause = self._interval
            try:
                await self._step(self._cycle())
            except _Interrupted:
                break
            except AdapterUnavailable as exc:
                if not self._scanned:  # no adapter from the start: an error, as for `wking scan`
                    self._failure = exc
                    break
                pause = self._failed("cycle", exc)
            except Exception as exc:  # noqa: BLE001 - one failing cycle must not end the run
                pause = self._failed("cycle", exc)
            else:
                self._recovered("cycle")
            self.summary.cycles += 1
            await self._flush()
            if self._failure is not None:
                break
            if loop.time() - swept >= self._sweep_every:
                await self._sweep()
                swept = loop.time()
            self._write_status("running")
            pause -= loop.time() - cycle_started
            if pause > 0 and not self._ended():
                try:
                    await self._step(asyncio.sleep(pause))
                except _Interrupted:
                    break

    async def _stop_uploading(self, task: asyncio.Task[None]) -> bool:
        """Stop the uploader (what it holds claimed becomes pending again) and keep its counts.

        Returns:
            Whether the run itself was cancelled meanwhile (see :func:`_end`).
        """
        cancelled = await _end(task)
        assert self._uploader is not None
        self.summary.upload = {
            **self._uploader.counters.as_dict(),
            "last_error": (
                None
                if self._uploader.last_error is None
                else self._scrub(self._uploader.last_error, limit=None)
            ),
        }
        return cancelled

    async def _shut_down(
        self, watcher: asyncio.Task[None], detach: list[Callable[[], None]]
    ) -> bool:
        """Let go of everything the run holds; whether the run was cancelled meanwhile."""
        # A withdrawal made since the last look is carried out before the store is let go
        # (another process cannot purge while this one holds the store).
        if self._failure is None:
            try:
                self._poll_consent()
            except Exception as exc:  # noqa: BLE001 - the shutdown goes on
                self._failed("consent", exc)  # one line, as while running
        cancelled = await _end(watcher)
        await self._close_sessions()  # their disconnections are logged before the flush
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
                message = self._scrub(str(exc), limit=None)
                self.summary.errors.append(f"store: {unsent} records not stored: {message}")
        self.tally()
        return cancelled

    def tally(self) -> AgentSummary:
        """Bring :attr:`summary` up to date with the collectors' counters, and return it.

        The run does this when it ends; a supervisor that gives up on a run that does not end
        (see the ``wking`` command) calls it to report what was stored so far.
        """
        self.summary.speakers_seen = len(self._seen)
        self.summary.speakers_read = len(self._read)
        self.summary.skipped = sum(c.stats.skipped for c in self.collectors)
        self.summary.reconnects = self.sessions.reconnects
        for collector in self.collectors:
            self.summary.records[type(collector).__name__] = collector.stats.flushed
        return self.summary

    def status(self, state: str) -> dict[str, Any]:
        """The status ``wking agent status`` reads: counts and timestamps only."""
        summary = self.tally()
        return {
            "state": state,
            "pid": os.getpid(),
            "started_at": self._started_at,
            "updated_at": time.time(),
            "cycles": summary.cycles,
            "speakers_seen": summary.speakers_seen,
            "speakers_read": summary.speakers_read,
            "reads_ok": summary.reads_ok,
            "reads_failed": summary.reads_failed,
            "reads_no_slot": summary.reads_no_slot,
            "sessions_kept": summary.sessions_kept,
            "reconnects": summary.reconnects,
            "records": sum(summary.records.values()),
            "skipped": summary.skipped,
            "active": self._active(),
            "failures": dict(sorted(summary.failures.items())),
            "upload": self._uploader.counters.as_dict() if self._uploader is not None else None,
            "last_errors": list(self._last_errors),
        }

    def _active(self) -> list[str]:
        return sorted(type(c).__name__ for c in self.collectors if c.active)

    def _write_status(self, state: str) -> None:
        if self._status is None:
            return
        self._shown_active = self._active()
        try:
            self._status.write(self.status(state))
        except OSError as exc:  # a full disk: the run goes on without a status
            self._status.failed(exc)


async def _end(task: asyncio.Task[None]) -> bool:
    """Cancel one of the run's own tasks and wait until it has ended.

    Its cancellation is not the caller's: a cancellation of the caller that lands during the
    wait is not swallowed with the task's ``CancelledError`` (nor does it cut the wait short,
    which would leave the task running past the shutdown); it is returned, for the run to raise
    once its shutdown is done.

    Returns:
        Whether the caller was cancelled during the wait.
    """
    cancelled = False
    task.cancel()
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
            task.cancel()
    if not task.cancelled():
        task.result()  # an exception of its own is raised, as before
    return cancelled
