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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wking_device._redact import redact
from wking_device.agent._status import StatusWriter
from wking_device.ble import (
    BleBackend,
    EventBus,
    SessionKeeper,
    Speaker,
    discover,
    limiter_for,
    read_all,
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
from wking_device.config import Paths, Settings
from wking_device.consent import ConsentGate
from wking_device.errors import (
    AdapterUnavailable,
    BluetoothError,
    ConfigError,
    LedgerTampered,
    UsageError,
)

if TYPE_CHECKING:
    from wking_device.store import RecordStore
    from wking_device.upload import Uploader

__all__ = ["Agent", "AgentSummary"]

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")

_OVERRUN_S = 0.5
"""Seconds a step may run past the end of the duration to finish (a scan stopping), then cut."""

_LAST_ERRORS = 5  # errors kept in the status file
_MAX_SUMMARY_ERRORS = 100  # error lines kept in the summary of a long run
_ERROR_CHARS = 200  # an error message's length there


# The collectors whose data comes from speakers: with none of them active, the agent neither
# scans nor connects (software and location snapshots need no radio, and diagnostics alone is no
# reason to connect to anyone).
_RADIO_COLLECTORS = ("operations", "device_info")


class _Interrupted(Exception):
    """A step of the loop was cut short by :meth:`Agent.stop` or the end of the duration."""


class _ConfigDoNotTrack:
    """Whether the settings say Do Not Track now: ``config.toml`` is re-read when it changes (stat).

    The environment counts too (it does not change while the process runs).

    A file that cannot be read or parsed counts as Do Not Track on (fail closed) until it is
    fixed, with one warning per change.
    """

    def __init__(self, paths: Paths, settings: Settings) -> None:
        self._paths = paths
        # the settings were read from the file as it is now (environment included)
        self._stamp = self._disk_stamp()
        self._value = settings.do_not_track

    def _disk_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = self._paths.config_file.stat()
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def __call__(self) -> bool:
        stamp = self._disk_stamp()
        if stamp == self._stamp:
            return self._value
        self._stamp = stamp
        from wking_device.config import load_settings  # noqa: PLC0415 - avoids an import cycle

        try:
            self._value = load_settings(self._paths).do_not_track
        except ConfigError as exc:
            _LOGGER.warning(
                "the configuration cannot be read (%s): Do Not Track is taken as on", exc
            )
            self._value = True
        return self._value


@dataclass(slots=True, kw_only=True)
class AgentSummary:
    """What one agent run did.

    Attributes:
        cycles: Scan-and-read cycles completed.
        speakers_seen: Distinct W-KING speakers seen advertising.
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
        errors: One line per cycle-level error.
        duration_s: Wall time of the run.
        upload: The uploader's counters (and its last error), or ``None`` without one.
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

    Do Not Track while running: it is on when this process's environment, ``config.toml`` (with
    ``paths``) or another process says so (a ``dnt_on`` recorded in the ledger). Once another
    process turned it on, it stays on for the rest of this run: a ``dnt_off`` recorded elsewhere
    (any command run without the variable) never restarts collection.
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
        paths: Paths | None = None,
        stop_grace: float = 2.0,
        uploader: Uploader | None = None,
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
        self._interval = interval
        self._scan_seconds = scan_seconds or min(settings.ble.scan_timeout, interval)
        self._consent_poll = consent_poll
        self._sweep_every = sweep_every
        self._seen: set[str] = set()
        self._read: set[str] = set()
        self._stop_grace = stop_grace
        self._stop = asyncio.Event()
        self._deadline: float | None = None
        self._max_cycles: int | None = None
        self._failure: LedgerTampered | AdapterUnavailable | None = None
        self._scanned = False
        self._stragglers: set[asyncio.Task[Any]] = set()
        # Do Not Track: this process's own settings (environment, and config.toml re-read when
        # watched) and a latch for another process's dnt_on (kept until the run ends).
        self._own_dnt: Callable[[], bool] = (
            _ConfigDoNotTrack(paths, settings)
            if paths is not None
            else lambda: settings.do_not_track
        )
        self._dnt_latched = False
        self._dnt_applied = gate.do_not_track
        # ledger entries this run has looked at: the gate also re-reads the ledger by itself
        # (on permit checks), so "new since the last poll" is kept here, not asked of the gate
        self._history_seen = len(gate.history())
        self._uploader = uploader
        self._upload_interval = upload_interval
        self._max_backoff = max_backoff
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
            UsageError: ``cycles`` is less than 1.
        """
        if cycles is not None and cycles < 1:
            raise UsageError(f"cycles must be at least 1, not {cycles}")
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
            if uploading is not None:
                await self._stop_uploading(uploading)
            await self._shut_down(watcher, detach)
            self.summary.duration_s = loop.time() - started
            self._write_status("stopped")
        if self._failure is not None:
            raise self._failure
        return self.summary

    def _ended(self) -> bool:
        if self._stop.is_set():
            return True
        if self._max_cycles is not None and self.summary.cycles >= self._max_cycles:
            return True
        return self._deadline is not None and asyncio.get_running_loop().time() >= self._deadline

    async def _step(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run one step of the loop, cut short by :meth:`stop` or the end of the duration.

        Raises:
            _Interrupted: The step was cut short (it was cancelled, and left behind when it did
                not finish within ``stop_grace``).
        """
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(coro)
        stopped = asyncio.ensure_future(self._stop.wait())
        timeout = None
        if self._deadline is not None:
            timeout = max(0.0, self._deadline + _OVERRUN_S - loop.time())
        try:
            await asyncio.wait(
                {task, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            await self._let_go(task)  # the run itself is cancelled: so is its step
            raise
        finally:
            stopped.cancel()
        if not task.done():
            await self._let_go(task)
            raise _Interrupted
        if task.cancelled():
            raise _Interrupted
        return task.result()

    async def _let_go(self, task: asyncio.Task[Any]) -> None:
        """Cancel a step and give it ``stop_grace`` seconds; past that, leave it behind."""
        task.cancel()
        task.add_done_callback(_consume)
        try:
            await asyncio.wait({task}, timeout=self._stop_grace)
        finally:
            if not task.done():
                # A Bluetooth call that swallowed its cancellation: the run does not wait for it.
                _LOGGER.warning(
                    "a Bluetooth operation did not stop within %g s; leaving it behind",
                    self._stop_grace,
                )
                self._stragglers.add(task)
                task.add_done_callback(self._stragglers.discard)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        await self._sweep()
        swept = loop.time()
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
        if self._failure is None:
            try:
                self._poll_consent()
            except Exception:  # an unreadable ledger must not stop the shutdown
                _LOGGER.exception("re-reading the consent ledger failed")
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
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
                self.summary.errors.append(f"store: {unsent} records not stored: {exc}")
        self.tally()

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

    async def _watch_consent(self) -> None:
        """Pick up grants, withdrawals and Do Not Track set elsewhere (``wking consent …``).

        A withdrawal found here revokes the permits at once: collectors stop and the store,
        attached to the gate, crypto-shreds the category. A ledger that fails verification ends
        the run (one ERROR; it is not read again).
        """
        pause = self._consent_poll
        while self._failure is None:
            await asyncio.sleep(pause)
            try:
                self._poll_consent()
            except Exception as exc:  # noqa: BLE001 - an unreadable ledger is retried later
                pause = min(self._failed("consent", exc), self._consent_poll * 8)
            else:
                self._recovered("consent")
                pause = self._consent_poll
            # a grant or withdrawal shows in the status at once
            if self._status is not None and self._active() != self._shown_active:
                self._write_status("running")

    def _poll_consent(self) -> None:
        """Re-read the ledger (when it changed) and the Do Not Track sources; stop on tampering."""
        if self._failure is not None:
            return
        self._gate.refresh()
        if self._check_tampered():
            return
        history = self._gate.history()
        fresh, self._history_seen = history[self._history_seen :], len(history)
        if not self._dnt_latched and any(entry.event == "dnt_on" for entry in fresh):
            self._dnt_latched = True
            _LOGGER.warning(
                "Do Not Track was turned on by another process: collecting nothing until the "
                "agent is restarted"
            )
        self._apply_do_not_track()

    def _apply_do_not_track(self) -> None:
        wanted = self._own_dnt() or self._dnt_latched
        if wanted == self._dnt_applied:
            return
        self._dnt_applied = wanted
        _LOGGER.warning(
            "Do Not Track is %s: %s",
            "on" if wanted else "off",
            "collecting nothing" if wanted else "collecting what is granted again",
        )
        self._gate.set_do_not_track(wanted)
        self._history_seen = len(self._gate.history())  # our own dnt_on/dnt_off: not a latch
        self._check_tampered()

    def _check_tampered(self) -> bool:
        """End the run, with one ERROR, if the ledger failed verification."""
        tampered = self._gate.tampered
        if tampered is None:
            return False
        if self._failure is None:
            _LOGGER.error("collecting nothing and stopping: %s", tampered)
            self._failure = tampered
            self._stop.set()
        return True

    def _may_keep_anything(self) -> bool:
        """Whether a scan or a connection could produce a record anyone may keep."""
        return any(getattr(self, name).active for name in _RADIO_COLLECTORS)

    async def _close_sessions(self) -> None:
        """Disconnect the kept speakers, within ``stop_grace`` seconds."""
        try:
            async with asyncio.timeout(self._stop_grace):
                await self.sessions.aclose()
        except TimeoutError:
            _LOGGER.warning("kept sessions did not close within %g s", self._stop_grace)

    async def _cycle(self) -> None:
        self._poll_consent()  # another process may have granted or withdrawn
        if self._failure is not None or not self._may_keep_anything():
            # nothing could be kept: no connection stays open (counted first: a stop may cancel
            # the cycle while the sessions close, and the summary must not claim them)
            self.summary.sessions_kept = 0
            await self._close_sessions()
            return  # and no scan, no connection
        loop = asyncio.get_running_loop()
        seconds = self._scan_seconds
        if self._deadline is not None:
            seconds = max(0.1, min(seconds, self._deadline - loop.time()))
        try:
            ble = self._settings.ble
            found = await discover(
                seconds,
                backend=self._backend,
                events=self._events,
                # `[ble] adapters`: a speaker any of them hears is found
                adapter=None if ble.adapters else ble.adapter,
                adapters=ble.adapters or None,
            )
        except AdapterUnavailable:
            raise
        except BluetoothError as exc:
            self._scanned = True
            self._failed("scan", exc)
            return
        self._scanned = True
        self._seen.update(s.address.upper() for s in found)
        bound = {address.upper() for address in self._bound_addresses()}
        targets = [
            s for s in found if s.address.upper() in bound or (self._connect_all and not bound)
        ]
        # A kept speaker may not advertise while connected: it stays wanted while bound (or,
        # with connect_all and no bindings, while kept).
        wanted = bound or (
            {s.address.upper() for s in targets} | self.sessions.kept
            if self._connect_all
            else set()
        )
        # a cancellation lost inside the scan must not lead to connections after a stop
        if self._ended() or not self._may_keep_anything():
            return
        kept = await self.sessions.keep(wanted, targets)
        self.summary.sessions_kept = len(kept)
        self._names.update(s.name for s in found if s.name)
        await self._read_kept(kept)
        targets = [s for s in targets if s.address.upper() not in kept]
        if not targets:
            return
        if await self._slots_kept_for_good(len(targets)):
            # no slot can come free while these sessions are kept: waiting slot_timeout per
            # speaker would only delay the next cycle, which looks again
            self.summary.reads_failed += len(targets)
            self.summary.reads_no_slot += len(targets)
            return
        result = await read_all(
            targets,
            backend=self._backend,
            events=self._events,
            settings=self._settings.ble,
            read=self._read_speaker,
        )
        if self._ended():
            raise _Interrupted
        self.summary.reads_ok += len(result.infos)
        self.summary.reads_failed += len(result.errors)
        self._read.update(address.upper() for address in result.infos)
        for info in result.infos.values():
            self.device_info.on_info(info)

    async def _slots_kept_for_good(self, polled: int) -> bool:
        """Whether this agent's kept sessions hold every slot a polled read could use.

        "For good": each adapter a poll could go through (``ble.adapters``, else ``ble.adapter``)
        has as many slots held by kept sessions whose link is up as its effective limit (the
        controller's own limit where the stack reports one). The agent lets such a session go
        only between cycles (an unbind, a withdrawal, the end), so no slot comes free for this
        cycle's polls but by a link going down. Slots held by anyone else — another program, a
        library user's session, a kept session still connecting — may come free: those polls
        keep the bounded wait (``ble.slot_timeout``). The state is logged when it changes: one
        WARNING when polls start being skipped, one INFO when a slot is free again.
        """
        ble = self._settings.ble
        connected = self.sessions.connected()
        names: list[str | None] = list(ble.adapters) if ble.adapters else [ble.adapter]
        full: list[str] = []
        if connected:
            for name in names:
                limiter = limiter_for(self._backend, ble.max_connections, adapter=name)
                await limiter.read()
                held = limiter.held_by(connected)
                if held < limiter.effective_limit:
                    break
                full.append(f"{name or 'the default adapter'} ({limiter.effective_limit})")
        state = ", ".join(full) if len(full) == len(names) else None
        if state != self._no_slot:
            if state is not None:
                _LOGGER.warning(
                    "polled reads skipped: every connection slot of %s is held by a speaker "
                    "this agent keeps connected; %d polled speakers are not read until a slot is "
                    "free (set ble.max_connections to the adapter's slots so one stays free)",
                    state,
                    polled,
                )
            else:
                _LOGGER.info(
                    "polled reads resume: this agent's kept sessions no longer hold every "
                    "connection slot"
                )
            self._no_slot = state
        return state is not None

    async def _read_kept(self, kept: set[str]) -> None:
        """Read the kept speakers over their open links (new ones get one connection attempt)."""
        if not kept:
            return
        ble = self._settings.ble
        await self.sessions.settled(ble.connect_timeout * ble.connect_attempts + ble.scan_timeout)
        for address in sorted(kept):
            if self._ended():
                raise _Interrupted
            if address not in self.sessions.connected():
                self.summary.reads_failed += 1
                error = self.sessions.last_error(address)
                _LOGGER.debug("kept %s is not connected: %s", address, error)
                continue
            try:
                info = await self._read_speaker(self.sessions.session(address))
            except BluetoothError as exc:
                self.summary.reads_failed += 1
                _LOGGER.debug("reading kept %s failed: %s", address, exc)
                continue
            self.summary.reads_ok += 1
            self._read.add(address)
            self.device_info.on_info(info)

    def _bound_addresses(self) -> set[str]:
        if self._bound is None:
            return set()
        if callable(self._bound):
            return self._bound()
        return self._bound

    async def _read_speaker(self, speaker: Speaker) -> Any:
        """Read one speaker; an unexpected exception is that speaker's error, not the cycle's."""
        try:
            return await speaker.read_info()
        except (BluetoothError, asyncio.CancelledError):
            raise
        except Exception as exc:
            self._failed("speaker", exc)
            raise BluetoothError(
                f"reading the speaker failed: unexpected {type(exc).__name__}"
            ) from exc

    async def _flush(self) -> None:
        failed = False
        for collector in self.collectors:
            try:
                await collector.flush()
            except Exception as exc:  # noqa: BLE001 - one collector must not stop the others
                # The collector keeps the batch; the next cycle retries it.
                self._failed("store", exc)
                failed = True
        if not failed:
            self._recovered("store")

    async def _sweep(self) -> None:
        try:
            await self._store.sweep(now=time.time())
        except Exception as exc:  # noqa: BLE001 - the next sweep retries
            self._failed("retention", exc)
        else:
            self._recovered("retention")

    async def _supervise(self, part: str, start: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a long-lived part; restart it with backoff whenever it raises, until cancelled."""
        while not self._stop.is_set():
            try:
                await start()
            except Exception as exc:  # noqa: BLE001 - a failing part must not end the run
                await asyncio.sleep(self._failed(part, exc))
            else:
                return

    def _failed(self, where: str, exc: BaseException) -> float:
        """Count a failure of a part, log it once, keep it for the status; return the backoff.

        The same failure again (type and message) is not logged again until the part recovers.
        """
        failures = self.summary.failures
        failures[where] = failures.get(where, 0) + 1
        streak = self._streak[where] = self._streak.get(where, 0) + 1
        key = f"{type(exc).__name__}: {exc}"
        if self._reported.get(where) != key:
            self._reported[where] = key
            _LOGGER.warning("%s failed (%s): %s", where, type(exc).__name__, exc)
        if len(self.summary.errors) < _MAX_SUMMARY_ERRORS:
            self.summary.errors.append(f"{where}: {exc}")
        self._last_errors.append(
            {
                "at": time.time(),
                "part": where,
                "type": type(exc).__name__,
                "message": self._scrub(str(exc)),
            }
        )
        del self._last_errors[:-_LAST_ERRORS]
        self.diagnostics.on_exception(exc, where=where)
        return float(min(self._max_backoff, self._interval * 2.0 ** min(streak - 1, 20)))

    def _recovered(self, where: str) -> None:
        if self._streak.pop(where, 0) and self._reported.pop(where, None) is not None:
            _LOGGER.info("%s works again", where)

    def _scrub(self, text: str) -> str:
        """No address, key or speaker name in a message kept in the status file."""
        text = redact(text)
        for name in sorted(self._names, key=len, reverse=True):
            text = text.replace(name, "[NAME]")
        return text[:_ERROR_CHARS]

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


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a left-behind task's outcome so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()
