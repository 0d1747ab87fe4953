"""``wking agent run``: run the agent for a bounded time (or until interrupted).

This module opens the installation (gate, store, bindings), starts the agent against the real
adapter or ``--simulate N`` speakers, and prints the run's summary. The agent itself lives in
:mod:`wking_device.agent`.
"""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from wking_device.cli._app import AppContext, pass_app
from wking_device.cli._ble import bluetooth, open_bindings
from wking_device.cli._upload import resolve_target, upload_options

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from rich.console import Console

__all__ = ["register"]


@click.group()
def agent() -> None:
    """The collection agent."""


@agent.command()
@click.option(
    "--duration",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Seconds to run (default: until interrupted).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between scan-and-read cycles.",
)
@upload_options
@pass_app
def run(app: AppContext, /, duration: float | None, interval: float, **upload: Any) -> None:
    """Scan, read the bound (or, simulated, all) speakers and collect what consent allows.

    With a collector configured (upload.endpoint) or given (--endpoint), it also uploads every
    upload.interval seconds.
    """
    summary = app.run(_run(app, duration, interval, upload))

    def render(console: Console) -> None:
        table = Table(title="Agent run", show_header=False)
        for key in ("cycles", "speakers_seen", "reads_ok", "reads_failed", "skipped"):
            table.add_row(key, str(summary[key]))
        for name, count in summary["records"].items():
            table.add_row(f"stored by {name}", str(count))
        console.print(table)
        if summary["stopped_by"]:
            console.print(f"stopped by {summary['stopped_by']}")
        if summary["upload"] is not None:
            console.print(f"uploaded {summary['upload']['sent']} records")
        for line in summary["errors"]:
            console.print(f"[yellow]{line}[/yellow]")

    app.out(summary, render)


async def _run(
    app: AppContext, duration: float | None, interval: float, upload: dict[str, Any]
) -> dict[str, Any]:
    from wking_device.agent import Agent  # noqa: PLC0415
    from wking_device.collect import open_installation_gate  # noqa: PLC0415
    from wking_device.store import open_store  # noqa: PLC0415

    paths, settings = app.paths, app.settings
    gate = open_installation_gate(paths, settings)
    if gate.tampered is not None:
        raise gate.tampered  # the ledger was altered: every category is denied (exit 7)
    bound = open_bindings(app).addresses  # re-read at every cycle: an unbind counts at once
    target = resolve_target(app, upload)  # checked before anything starts (http:// exits 5)
    async with bluetooth(app) as backend, open_store(paths, settings) as store:
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
            uploader=uploader,
            upload_interval=target.interval if target is not None else 30.0,
        )
        try:
            stopped_by = await _run_until_signal(agent_.run(duration))
        finally:
            if uploader is not None:
                await uploader.aclose()
        result = agent_.summary.as_dict()
    result["stopped_by"] = stopped_by
    return result


async def _run_until_signal(run: Coroutine[Any, Any, object]) -> str | None:
    """Run the agent; SIGINT (Ctrl-C) or SIGTERM (systemd) stops it gracefully.

    The agent's own shutdown then flushes the collectors, carries out withdrawals it has not seen
    yet and closes the store, and the command prints the run's summary and exits 0.

    Returns:
        The name of the signal that stopped the run, or ``None`` when it ran its course.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(run)
    received: list[str] = []

    def stop(sig: signal.Signals) -> None:
        received.append(sig.name)
        task.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop, sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or no Unix signals
            continue
        installed.append(sig)
    try:
        await task
    except asyncio.CancelledError:
        if not received:
            raise  # cancelled from outside, not by a signal: propagate
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
    return received[0] if received else None


def register(group: click.Group) -> None:
    """Add this module's commands to the root group."""
    group.add_command(agent)
