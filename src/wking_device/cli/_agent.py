"""``wking agent run`` and ``wking agent status``.

``agent status`` reads the status file a running agent rewrites after every cycle
(:mod:`wking_device.agent._status`) and checks that the agent is really alive (its process and the
store's writer lock); it creates nothing. ``agent run`` runs the agent for a bounded time (or
until stopped by a signal).

This module opens the installation (gate, store, bindings), checks there is something to collect,
starts the agent against the real adapter or ``--simulate N`` speakers, and prints the run's
summary. The agent itself lives in :mod:`wking_device.agent`.

Stopping (SIGINT, SIGTERM), in stages, so that a stop is never lost and never takes long:

1. The agent is asked to stop (:meth:`~wking_device.agent.Agent.stop`, a flag its loop races
   every step against): it cuts the current step short, hands what the collectors hold to the
   store, carries out withdrawals and closes. Before the agent exists, the start-up is cancelled.
2. After :data:`GRACE_S` (or at a second signal) the run is cancelled, again and again.
3. After :data:`HARD_S` more, the run is abandoned: the store is closed (everything it
   acknowledged is on disk), the summary printed, and the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from wking_device.cli import _signals
from wking_device.cli._app import AppContext, Seconds, pass_app
from wking_device.cli._ble import bluetooth, open_bindings
from wking_device.cli._term import cell, markup, visible
from wking_device.cli._upload import resolve_target, upload_options
from wking_device.errors import ConsentRequired, WkingError

if TYPE_CHECKING:
    from rich.console import Console

    from wking_device.agent import Agent
    from wking_device.consent import ConsentGate
    from wking_device.store import RecordStore

__all__ = ["GRACE_S", "HARD_S", "register"]

_LOGGER = logging.getLogger(__name__)

GRACE_S = 5.0
"""Seconds the agent gets to stop by itself after a signal."""

HARD_S = 3.0
"""Seconds more, with the run cancelled, before it is abandoned."""

_LEFTOVER_S = 1.0  # what is still running when the command ends gets this long to finish

# The categories the agent's collectors store (mac_addresses rides on operation_logs).
_AGENT_CATEGORIES = (
    "operation_logs",
    "device_info",
    "software_info",
    "mac_addresses",
    "location",
    "diagnostics",
)


@click.group()
@click.pass_context
def agent(ctx: click.Context) -> None:
    """The collection agent."""
    if ctx.invoked_subcommand != "run":
        _signals.default_behaviour()


@agent.command(short_help="Scan and read speakers; collect what consent allows.")
@click.option(
    "--duration",
    type=Seconds(min=0.1, max=366 * 86400.0),
    default=None,
    help="Seconds to run (default: until interrupted).",
)
@click.option(
    "--cycles",
    type=click.IntRange(min=1),
    default=None,
    help="Scan-and-read cycles to run, then stop (default: no limit; "
    "with --duration, whichever ends first).",
)
@click.option(
    "--interval",
    type=Seconds(min=0.1, max=3600.0),
    default=5.0,
    show_default=True,
    help="Seconds between scan-and-read cycles.",
)
@upload_options
@pass_app
def run(
    app: AppContext,
    /,
    duration: float | None,
    cycles: int | None,
    interval: float,
    **upload: Any,
) -> None:
    """Scan, read the bound (or, simulated, all) speakers and collect what consent allows.

    With a collector configured (upload.endpoint) or given (--endpoint), it also uploads every
    upload.interval seconds.
    """
    summary, error = _run_in_own_loop(app, duration, cycles, interval, upload)

    def render(console: Console) -> None:
        table = Table(title="Agent run", show_header=False)
        for key in (
            "cycles",
            "speakers_seen",
            "reads_ok",
            "reads_failed",
            "reads_no_slot",
            "sessions_kept",
            "reconnects",
            "skipped",
        ):
            table.add_row(key, cell(summary[key]))
        for name, count in summary["records"].items():
            table.add_row(cell(f"stored by {name}"), cell(count))
        console.print(table)
        if summary["stopped_by"]:
            console.print(f"stopped by {markup(summary['stopped_by'])}")
        if summary["upload"] is not None:
            console.print(f"uploaded {summary['upload']['sent']} records")
        for line in summary["errors"]:
            console.print(Text(visible(line), style="yellow"))

    app.out(summary, render)
    if error is not None:
        raise error  # a ledger altered while the agent ran: exit 7, after the summary


class _Run:
    """What the supervisor of one run knows: signals received, the agent and its store."""

    def __init__(self) -> None:
        self.signals: list[str] = []
        self.stop_asked = asyncio.Event()
        self.escalate = asyncio.Event()
        self.agent: Agent | None = None
        self.store: RecordStore | None = None
        # systemd's notification socket under Type=notify, else None
        from wking_device.agent._systemd import SystemdNotifier  # noqa: PLC0415 - the agent's

        self.systemd = SystemdNotifier.from_environment()
        self.watchdog: asyncio.Task[None] | None = None  # pings systemd's watchdog while running

    def on_signal(self, sig: signal.Signals) -> None:
        self.signals.append(sig.name)
        if self.stop_asked.is_set():
            self.escalate.set()  # a second Ctrl-C: do not wait for the graceful stop
        self.stop_asked.set()
        if self.systemd is not None:
            self.systemd.stopping(f"stopping ({sig.name})")
            if self.watchdog is not None:
                self.watchdog.cancel()  # no ping after STOPPING=1, however long the stop takes
        if self.agent is not None:
            self.agent.stop()


def _run_in_own_loop(
    app: AppContext,
    duration: float | None,
    cycles: int | None,
    interval: float,
    upload: dict[str, Any],
) -> tuple[dict[str, Any], WkingError | None]:
    """Run the agent in an event loop whose end is bounded too.

    ``asyncio.run`` waits, at its end, for every task it cancels; a task inside a Bluetooth
    library that ignores its cancellation would keep the command from ever exiting.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_supervise(app, duration, cycles, interval, upload))
    finally:
        try:
            _close_loop(loop)
        finally:
            if threading.current_thread() is threading.main_thread():
                # until the command ends (the summary is being printed), signals are recorded
                for sig in _signals.SIGNALS:
                    signal.signal(sig, _signals.record)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.wait(leftovers, timeout=_LEFTOVER_S))
    # whatever still runs is abandoned with the loop: say nothing about it at exit
    loop.set_exception_handler(_quiet_about_abandoned_tasks)
    with contextlib.suppress(TimeoutError):
        loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), _LEFTOVER_S))
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


def _quiet_about_abandoned_tasks(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if "Task was destroyed but it is pending" in str(context.get("message", "")):
        _LOGGER.debug("an abandoned task was dropped at exit")
        return
    loop.default_exception_handler(context)


async def _supervise(
    app: AppContext,
    duration: float | None,
    cycles: int | None,
    interval: float,
    upload: dict[str, Any],
) -> tuple[dict[str, Any], WkingError | None]:
    loop = asyncio.get_running_loop()
    state = _Run()
    installed: list[signal.Signals] = []
    for sig in _signals.SIGNALS:
        try:
            loop.add_signal_handler(sig, state.on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / no Unix
            continue
        installed.append(sig)
    for sig in _signals.take():  # received while the command line was parsed
        state.on_signal(sig)
    try:
        return await _stop_within_deadline(
            state,
            _run(app, state, duration=duration, cycles=cycles, interval=interval, upload=upload),
        )
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
            signal.signal(sig, _signals.record)  # the summary is still to be printed


async def _stop_within_deadline(
    state: _Run, work_coro: Any
) -> tuple[dict[str, Any], WkingError | None]:
    loop = asyncio.get_running_loop()
    work: asyncio.Task[tuple[dict[str, Any], WkingError | None]] = asyncio.ensure_future(work_coro)
    asked = asyncio.ensure_future(state.stop_asked.wait())
    try:
        await asyncio.wait({work, asked}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        asked.cancel()
    if not work.done():
        if state.agent is None:
            work.cancel()  # still starting: nothing to flush yet
        escalate = asyncio.ensure_future(state.escalate.wait())
        try:
            await asyncio.wait(
                {work, escalate}, timeout=GRACE_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            escalate.cancel()
    if not work.done():
        _LOGGER.warning("the agent did not stop within %g s; cancelling it", GRACE_S)
        end = loop.time() + HARD_S
        while not work.done() and loop.time() < end:
            work.cancel()  # again: a cancellation can be lost inside a Bluetooth library
            await asyncio.wait({work}, timeout=0.2)
    if not work.done():
        _LOGGER.error(
            "the agent did not stop within %g s; abandoning the run (what the store "
            "acknowledged is kept)",
            GRACE_S + HARD_S,
        )
        if state.store is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(state.store.aclose(), HARD_S)
        return _summary(state), None
    if work.cancelled():
        return _summary(state), None
    return work.result()


def _summary(state: _Run) -> dict[str, Any]:
    from wking_device.agent import AgentSummary  # noqa: PLC0415

    summary = state.agent.tally() if state.agent is not None else AgentSummary()
    result = summary.as_dict()
    result["stopped_by"] = state.signals[0] if state.signals else None
    return result


async def _run(
    app: AppContext,
    state: _Run,
    *,
    duration: float | None,
    cycles: int | None,
    interval: float,
    upload: dict[str, Any],
) -> tuple[dict[str, Any], WkingError | None]:
    from wking_device.agent import STATUS_FILE, Agent  # noqa: PLC0415
    from wking_device.collect import open_installation_gate  # noqa: PLC0415
    from wking_device.errors import LedgerTampered  # noqa: PLC0415
    from wking_device.store import open_store  # noqa: PLC0415

    paths, settings = app.paths, app.settings
    gate = open_installation_gate(paths, settings)
    if gate.tampered is not None:
        raise gate.tampered  # the ledger was altered: every category is denied (exit 7)
    _check_something_to_collect(gate, json_logs=app.log_format == "json")
    bound = open_bindings(app).addresses  # re-read at every cycle: an unbind counts at once
    error: WkingError | None = None
    target = resolve_target(app, upload)  # checked before anything starts (http:// exits 5)
    async with bluetooth(app) as backend, open_store(paths, settings) as store:
        state.store = store
        uploader = None
        if target is not None:
            from wking_device.upload import open_uploader  # noqa: PLC0415 - aiohttp is slow

            uploader = open_uploader(
                target, store=store, gate=gate, data_dir=paths.data_dir, max_attempts=8
            )
        agent_ = Agent(
            gate=gate,
            store=store,
            settings=settings,
            backend=backend,
            bound=bound,
            connect_all=bool(app.simulate),
            interval=interval,
            scan_seconds=min(1.5, interval) if app.simulate else None,
            adapter_mac="" if app.simulate else None,
            paths=paths,
            uploader=uploader,
            upload_interval=target.interval if target is not None else 30.0,
            status_file=paths.data_dir / STATUS_FILE,
        )
        state.agent = agent_
        if state.stop_asked.is_set():
            agent_.stop()
        watchdog = _tell_systemd_ready(state)
        try:
            await agent_.run(duration, cycles=cycles)
        except LedgerTampered as exc:
            error = exc  # printed after the summary of what was stored until then
        finally:
            _tell_systemd_stopping(state, watchdog)
            if uploader is not None:
                await uploader.aclose()
    return _summary(state), error


def _tell_systemd_ready(state: _Run) -> asyncio.Task[None] | None:
    """``READY=1`` (the agent runs) and the watchdog task, when started by systemd."""
    if state.systemd is None or state.agent is None or state.stop_asked.is_set():
        return None  # stopped before it ran: STOPPING=1 was sent, READY=1 never is
    agent_ = state.agent
    state.systemd.ready("running: collecting what consent allows")

    def describe() -> str:
        tally = agent_.tally()
        return (
            f"running: {tally.cycles} cycles, {tally.speakers_seen} speakers seen, "
            f"{sum(tally.records.values())} records stored, "
            f"{tally.reads_no_slot} reads skipped (no free slot)"
        )

    state.watchdog = asyncio.ensure_future(state.systemd.keep_watchdog(describe))
    return state.watchdog


def _tell_systemd_stopping(state: _Run, watchdog: asyncio.Task[None] | None) -> None:
    """``STOPPING=1`` (unless a signal already said so) and the watchdog's end."""
    if watchdog is not None:
        watchdog.cancel()
    if state.systemd is not None:
        if not state.signals:  # the run's --duration or --cycles is over
            state.systemd.stopping("stopping (the run is over)")
        state.systemd.close()


@agent.command(short_help="Whether an agent runs for this home, and what it did.")
@pass_app
def status(app: AppContext, /) -> None:
    r"""Tell whether an agent runs for this home: since when, its last cycle, counters, errors.

    An agent runs when the process in its status file is alive and holds the record store; a
    file left by an agent that was killed says 'not running (last seen …)'. Reads only: creates
    nothing. Exit 0 in every case (see "running" in --json).
    """
    from wking_device.agent import agent_status  # noqa: PLC0415

    report = agent_status(app.paths)

    def render(console: Console) -> None:
        state = report["status"]
        if state is None:
            console.print("no agent has run for this home")
            return
        if report["running"]:
            console.print(
                f"agent running (pid {markup(state.get('pid'))}) since "
                f"{_when(state.get('started_at'))}; last cycle {_when(state.get('updated_at'))}"
            )
        else:
            console.print(f"not running (last seen {_when(state.get('updated_at'))})")
        table = Table(show_header=False)
        for key in (
            "cycles",
            "speakers_seen",
            "speakers_read",
            "reads_ok",
            "reads_failed",
            "reads_no_slot",
            "sessions_kept",
            "reconnects",
        ):
            table.add_row(key, cell(state.get(key)))
        table.add_row("records stored", cell(state.get("records")))
        upload = state.get("upload")
        if isinstance(upload, dict):
            for key in ("sent", "retried", "rejected"):
                table.add_row(cell(f"upload {key}"), cell(upload.get(key)))
        failures = state.get("failures")
        if isinstance(failures, dict):
            for part, count in failures.items():
                table.add_row(cell(f"failures: {part}"), cell(count))
        console.print(table)
        for error in state.get("last_errors") or []:
            if isinstance(error, dict):
                line = (
                    f"{_when(error.get('at'))} {error.get('part')}: {error.get('type')}: "
                    f"{error.get('message')}"
                )
                console.print(Text(visible(line), style="yellow"))

    app.out(report, render)


def _when(timestamp: object) -> str:
    """A status file's timestamp, local time, escaped (the file is not trusted)."""
    import datetime as dt  # noqa: PLC0415

    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        with contextlib.suppress(OverflowError, OSError, ValueError):
            return dt.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")
    return markup(visible(str(timestamp)))


def _check_something_to_collect(gate: ConsentGate, *, json_logs: bool = False) -> None:
    """Refuse to run with nothing the agent could collect; warn under Do Not Track.

    The warning is a ``warning:`` line, or with ``--log-format json`` a log record (a JSON line,
    like everything else the agent says on standard error).

    Raises:
        ConsentRequired: No category the agent collects is granted (exit 3).
    """
    states = [gate.state(category) for category in _AGENT_CATEGORIES]
    # granted, or granted but held back by Do Not Track (which can be turned off while it runs)
    usable = [s for s in states if s.granted or s.reason == "do_not_track"]
    if not usable:
        suspended = sorted(s.category for s in states if s.reason == "policy_change")
        if suspended:
            # after an upgrade whose privacy notice changed the terms: say so, not "not granted"
            older = sorted({s.policy_version for s in states if s.policy_version})
            raise ConsentRequired(
                set(suspended),
                reason=f"the privacy notice changed to version {gate.policy.version}: grants "
                f"made under {', '.join(older) or 'an earlier version'} are suspended until you "
                f"grant them again ('wking policy diff', then 'wking consent grant "
                f"{' '.join(suspended)}')",
            )
        raise ConsentRequired(
            {"operation_logs", "device_info"},
            reason="the agent has nothing it may collect; 'wking consent status' lists the "
            "categories",
        )
    if gate.do_not_track:
        message = (
            "Do Not Track is on: the agent collects nothing and connects to no speaker while it "
            "is (see 'wking consent status')"
        )
        if json_logs:
            _LOGGER.warning(message)
        else:
            click.echo(f"warning: {message}", err=True)


def register(group: click.Group) -> None:
    """Add this module's commands to the root group."""
    group.add_command(agent)
