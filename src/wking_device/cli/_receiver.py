"""``wking receiver run`` and ``wking receiver export``: the reference receiver from the shell.

This module only parses options, runs :class:`wking_device.receiver.Receiver` until SIGINT or
SIGTERM, and prints what the receiver stored. aiohttp and the receiver are imported inside the
commands, never at ``wking`` start-up (aiohttp alone takes about half a second to import).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from wking_device.cli._app import AppContext, pass_app
from wking_device.cli._term import visible
from wking_device.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["register"]

_BODY_CHARS = 60


@click.group(short_help="Run a reference OTLP/HTTP receiver over TLS (tests, demos).")
def receiver() -> None:
    """Run a reference OTLP/HTTP logs receiver over TLS (tests, demos)."""


@receiver.command("run")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (a non-loopback address exposes it to the network).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    required=True,
    help="TCP port (0: pick a free one; 4318 is OTLP/HTTP's usual port).",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    metavar="DIR",
    help="Directory for the CA (DIR/ca.pem), the server certificate and receiver.db.",
)
@click.option(
    "--fault-plan",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="Inject faults described by a TOML or JSON fault plan.",
)
@pass_app
def run(app: AppContext, host: str, port: int, data_dir: Path, fault_plan: Path | None) -> None:
    """Serve POST /v1/logs over TLS until SIGINT or SIGTERM."""
    from wking_device.receiver import load_fault_plan  # noqa: PLC0415 - aiohttp is slow

    plan = load_fault_plan(fault_plan) if fault_plan is not None else None
    summary = app.run(_serve(app, host, port, data_dir, plan))
    if not app.json:
        click.echo(
            f"stopped: {summary['stored']} records stored, {summary['duplicates']} duplicates, "
            f"{summary['requests']} requests",
            err=True,
        )


async def _serve(
    app: AppContext, host: str, port: int, data_dir: Path, plan: Any
) -> dict[str, int]:
    from wking_device.receiver import Receiver  # noqa: PLC0415 - aiohttp is slow

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Receiver(data_dir, host=host, port=port, fault_plan=plan) as rx:
            info = {"url": rx.url, "endpoint": rx.endpoint, "ca_file": str(rx.ca_file)}

            def render(console: Console) -> None:
                console.print(Text(visible(f"listening on {rx.endpoint}")))
                console.print(Text(visible(f"CA certificate: {rx.ca_file}")))

            app.out(info, render)
            sys.stdout.flush()
            await stop.wait()
            stats = rx.stats
            return {
                "requests": stats.requests,
                "stored": stats.stored,
                "duplicates": stats.duplicates,
            }
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


@receiver.command("export")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    metavar="DIR",
    help="The receiver's directory (as given to 'wking receiver run').",
)
@pass_app
def export(app: AppContext, data_dir: Path) -> None:
    """Print the records the receiver stored.

    With --json: a list of objects (record_id, category, installation_id, body, ...).
    """
    from wking_device.receiver import DB_FILE, export_records  # noqa: PLC0415

    database = data_dir / DB_FILE
    if not database.is_file():
        raise UsageError(
            f"no receiver data in {data_dir}",
            remedy="give the --data directory of 'wking receiver run'",
        )
    rows = export_records(database)

    def render(console: Console) -> None:
        table = Table(title=f"{len(rows)} records received")
        for column in ("record_id", "category", "installation_id", "body"):
            table.add_column(column)
        for row in rows:
            table.add_row(
                *(
                    Text(_printable(str(row[key] or ""), limit=_BODY_CHARS if key == "body" else 0))
                    for key in ("record_id", "category", "installation_id", "body")
                )
            )
        console.print(table)

    app.out(rows, render)


def _printable(text: str, *, limit: int = 0) -> str:
    """Untrusted text for a terminal (the one escaper: :func:`visible`), optionally shortened."""
    text = visible(text)
    if limit and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def register(cli: click.Group) -> None:
    """Add the ``receiver`` group to the root command."""
    cli.add_command(receiver)
