"""The ``wking data`` command group: ``status``, ``export`` and ``delete``.

This module owns the ``data`` group and renders the owner's view of the store: the status report
(records kept, pending, by category; the quarantine and eviction (loss) counters; the key-store
level), an export of the decrypted records for their owner, and deletion by crypto-shredding.
``status`` and ``export`` open the store read-only, so they work while an agent runs; ``delete``
needs the store to itself. It does no storage work of its own: the store encrypts, decrypts and
shreds. Deleting here is local; asking a collector to delete what it received arrives with the
uploader.

Exit codes: 6 when the master key is missing or wrong (never a silent empty report) or the export
file cannot be written, 7 when the database fails its integrity check.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from wking_device._redact import redact
from wking_device._url_mask import mask_url
from wking_device.cli._app import AppContext, parse_categories, pass_app, write_json
from wking_device.cli._term import cell, for_stderr, json_bytes, make_console, markup
from wking_device.errors import StorageError, UsageError
from wking_device.models import MAC_FIELDS
from wking_device.policy import CATEGORY_IDS

if TYPE_CHECKING:
    from collections.abc import Iterator

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
            "records": {
                "total": 0,
                "pending": 0,
                "claimed": 0,
                "rejected": 0,
                "by_category": {},
            },
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
            table.add_row(cell(category), cell(count))
        table.add_row("[bold]total[/bold]", f"[bold]{records['total']}[/bold]")
        console.print(table)
        console.print(
            f"pending upload: {records['pending']}  claimed: {records['claimed']}  "
            f"rejected by the collector: {records['rejected']}  "
            f"size: {data['bytes']:,} of {data['max_bytes']:,} bytes"
        )
        lost = data["evicted"]
        console.print(
            f"quarantined (failed authentication): {data['quarantined']}  "
            f"evicted by the size cap: {'[red]' if lost else ''}{lost}{'[/red]' if lost else ''}  "
            f"crypto-shredded: {data['shredded']}"
        )
        console.print(f"key store: {markup(data['key_store'] or 'none yet')}")
        console.print(destination(data["collector"]))

    return render


@data_group.command("status", short_help="Show what is kept on this machine, encrypted.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@pass_app
def data_status(app: AppContext, as_json: bool) -> None:
    """Show how many records are kept, pending, quarantined and evicted, and the key store."""
    if as_json:
        app.json = True
    data = app.run(_status(app.paths, app.settings))
    endpoint = app.settings.upload.endpoint
    data["collector"] = (
        None if endpoint is None else mask_url(endpoint)
    )  # a query may hold a secret
    app.out(data, _render(data))


def destination(endpoint: str | None) -> str:
    """Where collected records go: the configured collector, or nowhere (Rich markup, escaped).

    The collector's URL is shown masked (:func:`~wking_device.upload.mask_url`).
    """
    if endpoint is None:
        return (
            f"No collector is configured ({markup('[upload] endpoint')}): nothing leaves this "
            "machine unless you run 'wking upload --endpoint URL'."
        )
    return (
        f"Records go to {markup(mask_url(endpoint))} (OpenTelemetry logs over verified TLS) when "
        "'wking upload' or 'wking agent run' runs; nothing else leaves this machine."
    )


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).isoformat()


async def _export(app: AppContext, categories: list[str] | None) -> list[dict[str, Any]]:
    from wking_device.store import DB_FILE, open_store  # noqa: PLC0415

    paths = app.paths
    db = paths.data_dir / DB_FILE
    if not db.exists() or db.stat().st_size == 0:
        return []
    store = open_store(paths, app.settings, readonly=True)
    try:
        records = await store.export(categories)
    finally:
        await store.aclose()
    return [
        {
            "record_id": r.record_id,
            "category": r.category,
            "created_at": _iso(r.created_at),
            "consent_id": r.consent_id,
            "policy_version": r.policy_version,
            "body": r.body,
        }
        for r in records
    ]


@data_group.command("export", short_help="Export the records kept here, decrypted, to a file.")
@click.argument("categories", nargs=-1)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
    help="Write the records (JSON) to FILE, created private (0600); '-' for standard output.",
)
@click.option(
    "--with-macs",
    is_flag=True,
    help="Include MAC addresses in plain text (by default they are shown as [MAC]).",
)
@pass_app
def data_export(app: AppContext, categories: tuple[str, ...], out: Path, with_macs: bool) -> None:
    """Export the records kept on this machine, decrypted, for you (all, or CATEGORIES).

    The export is yours and plain text, created readable by you only. MAC addresses (kept only
    where you granted them) are written as [MAC] unless you ask for them with --with-macs: the
    privacy notice promises that no MAC address reaches the disk in plain text otherwise.
    """
    chosen = parse_categories(categories) or None
    with _progress(app, "Decrypting the records kept here…"):
        records = app.run(_export(app, chosen))
    held = sum(1 for r in records if any(field in r["body"] for field in MAC_FIELDS))
    if not with_macs:
        records = [{**r, "body": _without_macs(r["body"])} for r in records]
    document = {
        "exported_at": datetime.datetime.now(tz=datetime.UTC).isoformat(),
        "categories": chosen or sorted({r["category"] for r in records}),
        "records": records,
    }
    data = json_bytes(document)
    if str(out) == "-":
        write_json(data)
        return
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            os.fchmod(fd, 0o600)  # an existing file keeps its mode on O_CREAT: make it private
            file.write(data)
    except OSError as exc:  # a missing directory, no permission, a full disk: exit 6, one line
        raise StorageError(
            f"cannot write the export {out}: {exc.strerror or exc}",
            remedy="choose a file in an existing directory you can write, or '--out -'",
        ) from exc
    click.echo(
        f"wrote {len(records)} records to {for_stderr(out)} (readable by you only)", err=True
    )
    if held and with_macs:
        click.echo(
            f"note: {held} of them hold MAC addresses in plain text; keep the file private",
            err=True,
        )
    elif held:
        click.echo(
            f"note: {held} of them hold MAC addresses, written as [MAC]; add --with-macs for them",
            err=True,
        )


@contextlib.contextmanager
def _progress(app: AppContext, message: str) -> Iterator[None]:
    """A spinner on stderr while a long export runs: on a terminal only, never with --json."""
    if app.json or not sys.stderr.isatty():
        yield
        return
    with make_console(stderr=True).status(markup(message)):
        yield


def _without_macs(value: Any) -> Any:
    """The value with every MAC address in its strings replaced by ``[MAC]``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _without_macs(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_macs(item) for item in value]
    return value


async def _delete(app: AppContext, categories: list[str]) -> dict[str, int]:
    from wking_device.crypto import key_dir  # noqa: PLC0415
    from wking_device.store import DB_FILE, open_store  # noqa: PLC0415

    paths = app.paths
    db = paths.data_dir / DB_FILE
    if (not db.exists() or db.stat().st_size == 0) and not (
        key_dir(paths) / "keystore.json"
    ).exists():
        return dict.fromkeys(categories, 0)  # no record and no data key: nothing to shred
    # Without a database the key store may still hold data keys (they seal copies of the
    # database made before): the store, opened for writing, destroys them like any purge.
    async with open_store(paths, app.settings) as store:
        return {category: await store.purge(category) for category in categories}


def _rotate(app: AppContext) -> bool:
    """Forget the installation id: the next upload starts a new, unlinkable one."""
    from wking_device.upload._identity import forget_installation_id  # noqa: PLC0415

    return forget_installation_id(app.paths.data_dir)


@data_group.command("delete", short_help="Delete records kept on this machine (crypto-shredding).")
@click.argument("categories", nargs=-1)
@click.option("--all", "delete_all", is_flag=True, help="Delete the records of every category.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def data_delete(app: AppContext, categories: tuple[str, ...], delete_all: bool, yes: bool) -> None:
    """Delete the records of CATEGORIES kept on this machine, by crypto-shredding.

    Their data keys are destroyed and the master key is rotated, so this store can no longer
    decrypt them. A copy of the data directory made before (a backup) still can, with the master
    key as it was then: with the default key file, which lives in that directory, the copy
    alone is enough. docs/security.md says what each key store guarantees. Consent is
    unchanged: to stop collection, use 'wking consent withdraw'.
    """
    chosen = [] if delete_all else parse_categories(categories)
    if not chosen and not delete_all:
        raise UsageError("name the categories to delete, or use --all")
    if delete_all:
        # name the categories that hold records, not every category of the catalog
        held = app.run(_status(app.paths, app.settings))["records"]["by_category"]
        chosen = [c for c in CATEGORY_IDS if held.get(c)]
        if not chosen:
            # nothing to ask about, but a full deletion still destroys every data key (earlier
            # copies of the database) and starts a new, unlinkable installation id
            app.run(_delete(app, list(CATEGORY_IDS)))
            rotated = _rotate(app)
            app.out(
                {"deleted": {}, "total": 0, "installation_id_rotated": rotated},
                lambda console: console.print(
                    "nothing to delete: no records are kept on this machine"
                    + ("; the installation id was rotated" if rotated else "")
                ),
            )
            return
    if not yes:
        click.confirm(
            f"Delete every record of {', '.join(chosen)} kept on this machine? "
            "This cannot be undone here (earlier copies of the data directory are not "
            "affected).",
            default=False,
            abort=True,
            err=True,
        )
    # --all shreds the keys of every category, also those that hold no record now
    deleted = app.run(_delete(app, list(CATEGORY_IDS) if delete_all else chosen))
    deleted = {c: n for c, n in deleted.items() if c in chosen or n}
    result: dict[str, Any] = {"deleted": deleted, "total": sum(deleted.values())}
    if delete_all:
        result["installation_id_rotated"] = _rotate(app)

    def render(console: Console) -> None:
        console.print(f"deleted {result['total']} records ({markup(', '.join(chosen))})")
        console.print("consent is unchanged: 'wking consent withdraw' stops collection")

    app.out(result, render)


def register(group: click.Group) -> None:
    """Add the ``data`` group to the root group."""
    group.add_command(data_group)
