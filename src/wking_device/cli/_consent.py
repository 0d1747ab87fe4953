"""The ``wking consent`` and ``wking policy`` commands.

This module owns the consent dialogue (showing each category's description and the policy
version before a grant), the confirmation of withdrawals, and the rendering of status, history,
receipts and policy documents. Every decision is the gate's (:mod:`wking_device.consent`); this
module only asks the user and prints.

Exit codes: 2 usage (unknown category, ``--yes`` without categories), 3 consent errors (a missing
prerequisite, a minor without guardian), 7 a ledger that fails verification.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from wking_device.cli._app import AppContext, parse_categories, pass_app, write_json
from wking_device.cli._data import destination
from wking_device.cli._term import cell, for_stderr, json_bytes, make_console, markup, visible
from wking_device.errors import UsageError
from wking_device.policy import CATALOG, CATEGORY_IDS, dependents_of, shipped_policies

if TYPE_CHECKING:
    from rich.console import Console

    from wking_device.consent import ConsentGate

__all__ = ["register"]

_STATE_STYLE = {"granted": "green", "suspended": "yellow", "denied": "red"}

# Categories that only concern what happens when records are uploaded to a collector.
_UPLOAD_ONLY = frozenset({"ip_address", "cross_border_transfer"})


def _gate(app: AppContext, *, readonly: bool = False) -> ConsentGate:
    """Open the installation's gate; ``readonly`` for commands that only report.

    A read-only gate creates nothing and works on a read-only home.
    """
    # Imported here: the key store and collectors are not needed by `wking --help`.
    from wking_device.collect import open_installation_gate  # noqa: PLC0415

    return open_installation_gate(app.paths, app.settings, readonly=readonly)


def _with_json(app: AppContext, as_json: bool) -> None:
    if as_json:
        app.json = True


# --- consent ------------------------------------------------------------------------------------


@click.group("consent")
def consent_group() -> None:
    """See, grant and withdraw consent for each data category."""


@consent_group.command(
    "status", short_help="Show every category's state, Do Not Track and the ledger."
)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@pass_app
def consent_status(app: AppContext, as_json: bool) -> None:
    """Show every category's state (denied, granted, suspended), Do Not Track and the ledger."""
    _with_json(app, as_json)
    gate = _gate(app, readonly=True)
    report = gate.report()

    def render(console: Console) -> None:
        table = Table(title=f"Consent (policy {markup(report['policy_version'])})")
        for column in ("category", "state", "reason", "sensitive", "policy", "granted at"):
            table.add_column(column)
        for item in report["categories"]:
            table.add_row(
                cell(item["category"]),
                Text(visible(item["state"]), style=_STATE_STYLE.get(item["state"], "")),
                cell(item["reason"]),
                "yes" if item["sensitive"] else "",
                cell(item["policy_version"]),
                cell(item["granted_at"]),
            )
        console.print(table)
        console.print(f"Do Not Track: {'on' if report['do_not_track'] else 'off'}")
        if report["minor"]:
            console.print("Profile: minor (sensitive categories need a guardian grant)")
        ledger = report["ledger"]
        verdict = "verified" if ledger["verified"] else f"FAILED: {markup(ledger['error'])}"
        console.print(f"Ledger: {markup(ledger['entries'])} entries, {verdict}")

    app.out(report, render)
    if gate.tampered is not None:
        raise gate.tampered


def _interactive() -> bool:
    """Whether a person can be asked: standard input is a terminal."""
    return sys.stdin.isatty()


def _describe(console: Console, category_id: str, policy_version: str, policy_date: str) -> None:
    category = CATALOG[category_id]
    console.print(f"\n[bold]{markup(category.title)}[/bold] ({markup(category.id)})")
    console.print(f"  What: {markup(category.description)}")
    console.print(f"  Why: {markup(category.purpose)}")
    if category.permission:
        console.print("  Keeps no records of its own: it permits a use of the data you grant.")
    else:
        console.print(f"  Kept locally: at most {category.retention_days} days")
    if category_id in _UPLOAD_ONLY:
        console.print("  Matters only when records are uploaded to a collector.")
    if category.sensitive:
        console.print("  [yellow]Sensitive: asked for separately.[/yellow]")
    if category.requires:
        console.print(f"  Requires: {markup(', '.join(sorted(category.requires)))}")
    version = markup(policy_version)
    console.print(
        f"  Privacy notice: version {version} of {markup(policy_date)} "
        f"('wking policy show --version {version}')"
    )


@consent_group.command("grant")
@click.argument("categories", nargs=-1)
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Grant the named categories without prompting (categories must be named).",
)
@click.option(
    "--guardian",
    is_flag=True,
    help="The grant is made by a parent or guardian (needed for sensitive categories of a minor).",
)
@pass_app
def consent_grant(app: AppContext, categories: tuple[str, ...], yes: bool, guardian: bool) -> None:
    """Grant consent for CATEGORIES (asks for each one unless --yes).

    Without categories, every category is offered one by one.
    """
    chosen = parse_categories(categories)
    if yes and not chosen:
        raise UsageError(
            "--yes needs the categories named explicitly",
            remedy="e.g. 'wking consent grant --yes operation_logs'; categories: "
            + ", ".join(CATEGORY_IDS),
        )
    gate = _gate(app)
    if gate.tampered is not None:
        raise gate.tampered
    policy = gate.policy
    if yes:
        method = "guardian" if guardian else "cli-yes"
        accepted = chosen
    else:
        if not _interactive():
            # Consent is an affirmative act: piped input ("yes | wking consent grant") is not
            # one. Without a terminal only --yes with named categories grants (DESIGN §3).
            raise UsageError(
                "consent grant asks on a terminal, and standard input is not one",
                remedy="name the categories and pass --yes, e.g. "
                "'wking consent grant --yes operation_logs'",
            )
        method = "guardian" if guardian else "cli-prompt"
        # Questions go to stderr, so stdout stays the result (valid JSON with --json).
        console = make_console(stderr=True)
        if guardian and not click.confirm(
            "Do you confirm you are the parent or guardian of this profile's user?",
            default=False,
            err=True,
        ):
            raise click.Abort
        console.print(
            "The records are kept encrypted here, for the time each category states. "
            + destination(app.settings.upload.endpoint)
        )
        accepted = []
        for category_id in chosen or list(CATEGORY_IDS):
            _describe(console, category_id, policy.version, policy.date.isoformat())
            if click.confirm(f"Grant consent for {category_id}?", default=False, err=True):
                accepted.append(category_id)
        if not accepted:
            app.out(
                {"granted": [], "consent_id": None},
                lambda console: console.print("nothing granted"),
            )
            return
    entry = gate.grant(accepted, method=method)
    states = gate.states()
    result = {
        "granted": list(entry.categories),
        "consent_id": entry.id,
        "method": entry.method,
        "policy_version": entry.policy_version,
        "states": {c: states[c].state for c in entry.categories},
        "do_not_track": gate.do_not_track,
    }

    def render(console: Console) -> None:
        console.print(
            f"granted: {markup(', '.join(entry.categories))} "
            f"(policy {markup(entry.policy_version)}, consent id {markup(entry.id)})"
        )
        if gate.do_not_track:
            console.print(
                "[yellow]Do Not Track is on: nothing is collected until it is off.[/yellow]"
            )

    app.out(result, render)


@consent_group.command("withdraw", short_help="Withdraw consent for CATEGORIES, effective at once.")
@click.argument("categories", nargs=-1)
@click.option("--all", "withdraw_all", is_flag=True, help="Withdraw every category.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def consent_withdraw(
    app: AppContext, categories: tuple[str, ...], withdraw_all: bool, yes: bool
) -> None:
    """Withdraw consent for CATEGORIES, effective at once (one confirmation unless --yes).

    Categories that need a withdrawn one are withdrawn with it (mac_addresses with
    operation_logs).
    """
    chosen = [] if withdraw_all else parse_categories(categories)
    if not chosen and not withdraw_all:
        raise UsageError("name the categories to withdraw, or use --all")
    gate = _gate(app)
    if gate.tampered is not None:
        raise gate.tampered
    if withdraw_all:
        # every category with a grant on record (granted, suspended, or denied for now by Do
        # Not Track or a minor's profile): the ones the withdrawal applies to, and no others
        chosen = [c for c, state in gate.states().items() if state.consent_id is not None]
        if not chosen:
            app.out(
                {"withdrawn": [], "entry_id": None, "purged": 0, "note": None},
                lambda console: console.print("nothing to withdraw: no category is granted"),
            )
            return
    affected = sorted(set(chosen) | dependents_of(chosen))
    if not yes:
        states = gate.states()
        # name the dependents that go too, but only those that were granted at all
        extra = sorted(c for c in set(affected) - set(chosen) if states[c].state != "denied")
        also = f" (and {', '.join(extra)}, which needs it)" if extra else ""
        click.confirm(
            f"Withdraw consent for {', '.join(chosen)}{also}? Collection stops at once and "
            "their records kept on this machine are destroyed.",
            default=True,
            abort=True,
            err=True,
        )
    from wking_device.store import withdrawal_progress  # noqa: PLC0415 - only on this path

    before = withdrawal_progress(app.paths)  # the shredded counter, before the ledger write
    entry = gate.withdraw(chosen, method="cli-yes" if yes else "cli-prompt")
    withdrawn = list(entry.categories) if entry is not None else []
    # Always: a withdrawal recorded earlier whose shred never happened (no process held the
    # store, or it was killed in between) is carried out now too.
    shred = app.run(_shred(app, gate, before))
    result = {
        "withdrawn": withdrawn,
        "entry_id": entry.id if entry is not None else None,
        "purged": shred["purged"],
        "pending": shred["pending"],
        "note": shred["note"],
    }

    def render(console: Console) -> None:
        if withdrawn:
            console.print(f"withdrawn: {markup(', '.join(withdrawn))}")
        else:
            console.print("nothing to withdraw: none of these categories is granted")
        if shred["purged"]:
            console.print(f"destroyed {shred['purged']} records kept on this machine")
        if shred["note"]:
            console.print(Text(visible(shred["note"]), style="yellow"))

    app.out(result, render)


def _done_seq(marker: str | None) -> int:
    """The ledger seq of a store's ``withdrawals_done`` marker (``-1``: none)."""
    try:
        return int((marker or "").partition(":")[0])
    except ValueError:
        return -1


_HOLDER_WAIT = 10.0
"""Seconds ``withdraw`` waits for another process holding the store to shred."""


async def _shred(
    app: AppContext, gate: ConsentGate, before: tuple[str | None, int] | None
) -> dict[str, Any]:
    """Carry out every withdrawal in the ledger not carried out yet (DESIGN §3).

    Here when no other process holds the store; otherwise that process does it (a running
    agent, or a program whose gate is attached to the store, within a second) and this waits
    for it, to say what was done.
    """
    import asyncio  # noqa: PLC0415
    import time  # noqa: PLC0415

    from wking_device.errors import StorageError  # noqa: PLC0415
    from wking_device.store import (  # noqa: PLC0415 - only on this path
        open_store,
        store_in_use,
        withdrawal_progress,
    )

    if before is None:
        return {"purged": 0, "pending": False, "note": None}
    try:
        store = open_store(app.paths, app.settings, finish_withdrawals=False)
    except StorageError:
        if not store_in_use(app.paths):
            raise
    else:
        async with store:
            done = await store.finish_withdrawals()
        return {"purged": sum(done.values()), "pending": False, "note": None}
    withdrawals = [e for e in gate.history() if e.event == "withdraw"]
    target = withdrawals[-1].seq if withdrawals else None
    deadline = time.monotonic() + _HOLDER_WAIT
    progress: tuple[str | None, int] | None = before
    while target is not None and progress is not None and _done_seq(progress[0]) < target:
        if time.monotonic() > deadline:
            return {
                "purged": None,
                "pending": True,
                "note": "another process holds the record store and has not destroyed the "
                "withdrawn records yet; it does so when it next looks at the ledger, and "
                "the next process to open the store does if it stops first (nothing "
                "withdrawn is collected or uploaded meanwhile)",
            }
        await asyncio.sleep(0.05)
        progress = withdrawal_progress(app.paths)
    purged = (progress[1] - before[1]) if progress is not None else 0
    return {
        "purged": purged,
        "pending": False,
        "note": "destroyed by the process holding the record store",
    }


@consent_group.command("history")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@pass_app
def consent_history(app: AppContext, as_json: bool) -> None:
    """Show every recorded consent event, oldest first."""
    _with_json(app, as_json)
    gate = _gate(app, readonly=True)
    if gate.tampered is not None:
        raise gate.tampered
    entries = [entry.to_dict() for entry in gate.history()]

    def render(console: Console) -> None:
        table = Table(title="Consent history")
        for column in ("#", "time (UTC)", "event", "categories", "method", "policy"):
            table.add_column(column)
        for item in entries:
            table.add_row(
                cell(item["seq"]),
                cell(item["time"]),
                cell(item["event"]),
                cell(", ".join(item["categories"])),
                cell(item["method"]),
                cell(item["policy_version"]),
            )
        console.print(table)

    app.out(entries, render)


@consent_group.command("receipts", short_help="Export consent receipts (ISO/IEC TS 27560 shape).")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
    help="Write the receipts (JSON) to FILE ('-' for standard output).",
)
@pass_app
def consent_receipts(app: AppContext, out: Path) -> None:
    """Export consent receipts (ISO/IEC TS 27560 / Kantara Consent Receipt shape)."""
    from wking_device.consent import build_receipts  # noqa: PLC0415

    gate = _gate(app, readonly=True)
    document = build_receipts(gate)
    data = json_bytes(document)
    if str(out) == "-":
        write_json(data)  # UTF-8 JSON whatever the terminal's encoding
        return
    _write_private(out, data)
    click.echo(
        f"wrote {len(document['receipts'])} receipts to {for_stderr(out)} (readable by you only)",
        err=True,
    )


def _write_private(out: Path, data: bytes) -> None:
    """Write a file readable by its owner only (0600), whatever mode an existing one had.

    A regular file (or none) is replaced atomically by a new 0600 file written beside it; a
    device or pipe (``/dev/stdout``, a FIFO) is written in place and its mode left alone.
    """
    import stat  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    try:
        existing = out.stat()
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        with out.open("wb") as file:
            file.write(data)
        return
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as exc:  # name the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(out)) from exc
    try:
        with os.fdopen(fd, "wb") as file:  # mkstemp creates it 0600
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        Path(tmp).replace(out)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise


@consent_group.command("reset", short_help="Start an empty ledger after a failed verification.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def consent_reset(app: AppContext, yes: bool) -> None:
    """Set a ledger that failed verification aside and start an empty one (everything denied)."""
    gate = _gate(app)
    if gate.tampered is None:
        raise UsageError(
            "the consent ledger verifies; nothing to reset",
            remedy="use 'wking consent withdraw --all' to withdraw every consent",
        )
    if not yes:
        click.confirm(
            "The consent ledger failed verification. Set it aside and start a new, empty one? "
            "Every category stays denied until granted again.",
            default=False,
            abort=True,
            err=True,  # the question is not the result: stdout stays valid JSON with --json
        )
    moved = gate.ledger.quarantine()
    result: dict[str, Any] = {"reset": True, "kept_as": str(moved) if moved else None}
    app.out(
        result,
        lambda console: console.print(f"ledger reset; the old one is kept as {markup(moved)}"),
    )


# --- policy -------------------------------------------------------------------------------------


@click.group("policy", short_help="Read the privacy notice, its versions and their changes.")
def policy_group() -> None:
    """Read this library's privacy notice, its versions and their differences."""


@policy_group.command(
    "show", short_help="Print the privacy notice (installed version unless --version)."
)
@click.option("--version", "version", default=None, metavar="V", help="Show version V.")
@pass_app
def policy_show(app: AppContext, version: str | None) -> None:
    """Print the privacy notice (the installed version unless --version)."""
    document = shipped_policies().get(version)
    result = {
        "version": document.version,
        "date": document.date.isoformat(),
        "digest": document.digest,
        "significant": sorted(document.significant),
        "summary": document.summary,
        "text": document.text,
    }
    app.out(result, lambda console: click.echo(visible(document.text, multiline=True)))


@policy_group.command("versions")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@pass_app
def policy_versions(app: AppContext, as_json: bool) -> None:
    """List every version of the privacy notice, oldest first."""
    _with_json(app, as_json)
    policies = shipped_policies()
    items: list[dict[str, Any]] = [
        {
            "version": doc.version,
            "date": doc.date.isoformat(),
            "current": doc is policies.current,
            "significant": sorted(doc.significant),
            "summary": doc.summary,
            "digest": doc.digest,
        }
        for doc in policies
    ]

    def render(console: Console) -> None:
        table = Table(title="Privacy notice versions")
        for column in ("version", "date", "significant changes", "summary"):
            table.add_column(column)
        for item in items:
            marker = " (installed)" if item["current"] else ""
            table.add_row(
                cell(item["version"] + marker),
                cell(item["date"]),
                cell(", ".join(item["significant"])),
                cell(item["summary"]),
            )
        console.print(table)

    app.out(items, render)


@policy_group.command("diff", short_help="Show what changed between two versions of the notice.")
@click.argument("old")
@click.argument("new")
@pass_app
def policy_diff(app: AppContext, old: str, new: str) -> None:
    """Show what changed between versions OLD and NEW of the privacy notice."""
    diff = shipped_policies().diff(old, new)
    result = {
        "old": diff.old,
        "new": diff.new,
        "significant": sorted(diff.significant),
        "diff": diff.unified,
    }

    def render(console: Console) -> None:
        del console
        significant = ", ".join(sorted(diff.significant)) or "none"
        click.echo(f"significant changes for: {visible(significant)}")
        click.echo(
            visible(diff.unified, multiline=True) or "(no textual change)", nl=not diff.unified
        )

    app.out(result, render)


def register(group: click.Group) -> None:
    """Add the ``consent`` and ``policy`` groups to the root group."""
    group.add_command(consent_group)
    group.add_command(policy_group)
