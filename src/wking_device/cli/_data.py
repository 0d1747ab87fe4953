"""The ``wking data`` command group and ``wking data status``.

This module owns the ``data`` group (other modules may add ``export``, ``delete``, ``rectify`` to
:data:`data_group`) and the status report: records kept (total, pending, by category), the
quarantine and eviction (loss) counters, and the key-store level. It opens the store read-only,
so it works while an agent is running. It does no storage work of its own.

Exit codes: 6 when the master key is missing or wrong (never a silent empty report), 7 when the
database fails its integrity check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from wking_device.cli._app import AppContext, pass_app

if TYPE_CHECKING:
    from rich.console import Console

    from wking_device.config import Paths, Settings

__all__ = ["data_group", "register"]


@click.group("data")
def data_group() -> None:
    """See, export and delete the data collected on this machine."""


async def _status(paths: Paths, settings: Settings) -> dict[str, Any]:
    # Imported here: `wking --help` does not need cryptography or sqlite3.
    from wking_device.crypto import key_dir, open_key_store  # noqa: PLC0415
    from wking_device.store import DB_FILE, open_store  # noqa: PLC0415

    db = paths.data_dir / DB_FILE
    if not db.exists() or db.stat().st_size == 0:
        level = None
        if (key_dir(paths) / "keystore.json").exists():
            level = open_key_store(paths, create=False).level  # a missing KEK is still exit 6
        return {
            "records": {"total": 0, "pending": 0, "claimed": 0, "by_category": {}},
            "quarantined": 0,
            "evicted": 0,
            "shredded": 0,
            "key_store": level,
            "bytes": 0,
            "max_bytes": settings.storage.max_bytes,
        }
    store = open_store(paths, settings, readonly=True)
    try:
        stats = await store.stats()
    finally:
        await store.aclose()
    return stats.as_dict()


def _render(data: dict[str, Any]) -> Any:
    def render(console: Console) -> None:
        records = data["records"]
        table = Table(title="Records kept on this machine (encrypted)", show_header=True)
        table.add_column("category")
        table.add_column("records", justify="right")
        for category, count in records["by_category"].items():
            table.add_row(category, str(count))
        table.add_row("[bold]total[/bold]", f"[bold]{records['total']}[/bold]")
        console.print(table)
        console.print(
            f"pending upload: {records['pending']}  claimed: {records['claimed']}  "
            f"size: {data['bytes']:,} of {data['max_bytes']:,} bytes"
        )
        lost = data["evicted"]
        console.print(
            f"quarantined (failed authentication): {data['quarantined']}  "
            f"evicted by the size cap: {'[red]' if lost else ''}{lost}{'[/red]' if lost else ''}  "
            f"crypto-shredded: {data['shredded']}"
        )
        console.print(f"key store: {data['key_store'] or 'none yet'}")

    return render


@data_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@pass_app
def data_status(app: AppContext, as_json: bool) -> None:
    """Show how many records are kept, pending, quarantined and evicted, and the key store."""
    if as_json:
        app.json = True
    data = app.run(_status(app.paths, app.settings))
    app.out(data, _render(data))


def register(group: click.Group) -> None:
    """Add the ``data`` group to the root group."""
    group.add_command(data_group)
