"""``wking demo``: the whole job on simulated speakers, in a temporary home, checked stage by stage.

This module owns the demo command only: it puts together what exists — a temporary home
(:class:`tempfile.TemporaryDirectory`), the reference receiver (:mod:`wking_device.receiver`)
with a fresh private CA on 127.0.0.1, N simulated speakers (:mod:`wking_device.sim`), a consent
granted with the method ``demo`` in the demo's own ledger, and the agent
(:class:`~wking_device.agent.Agent`) uploading through :func:`~wking_device.upload.open_uploader`
— runs it for ``--duration`` seconds with a live view on a terminal, then proves each stage by
checking it:

- collected: the records the collectors handed over, per category (the store's counts);
- encrypted: the raw bytes of every file of the temporary home (the SQLite database and its
  WAL included) hold none of the simulated speakers' MAC addresses in any common spelling;
- uploaded: the uploader's counters;
- received and de-duplicated: the receiver holds exactly one row per record acknowledged.

The user's installation (``--home``, ``WKING_HOME``, the platform directories) is never read or
written; the temporary home is removed at the end, also on an error or Ctrl-C (which exits 130
without a summary).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from wking_device.cli._app import AppContext, pass_app
from wking_device.cli._term import cell, visible
from wking_device.errors import ConsentRequired, WkingError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from rich.console import Console

    from wking_device.agent import Agent
    from wking_device.receiver import Receiver
    from wking_device.store import RecordStore
    from wking_device.upload import Uploader

__all__ = ["DEMO_CATEGORIES", "StageFailed", "mac_spellings", "register", "scan_for_macs"]

_LOGGER = logging.getLogger(__name__)

DEMO_CATEGORIES = (
    "operation_logs",
    "device_info",
    "software_info",
    "diagnostics",
    "mac_addresses",
)
"""What the demo grants (``mac_addresses`` separately from the operation logs it rides on)."""

_FINAL_DRAIN_S = 15.0  # the last upload after the run: bounded
_REFRESH_S = 0.25  # the live view's refresh period
_STOP_S = 10.0  # Ctrl-C: how long the agent gets to shut down before the rest closes


class StageFailed(click.ClickException):
    """A stage of the demo did not pass its check (exit 1, after the summary)."""


@dataclass(slots=True)
class _Live:
    """What the live view shows, refreshed from the running parts."""

    agent: Agent
    store: RecordStore
    uploader: Uploader
    receiver: Receiver
    by_category: dict[str, int] = field(default_factory=dict)
    encrypted: int = 0

    async def refresh(self) -> None:
        stats = await self.store.stats()
        self.by_category = dict(sorted(stats.by_category.items()))
        self.encrypted = stats.total

    def table(self, remaining: float) -> Table:
        summary = self.agent.tally()
        counters = self.uploader.counters
        table = Table(title=f"wking demo — {max(0.0, remaining):.0f} s left", show_header=False)
        table.add_row("speakers seen", cell(summary.speakers_seen))
        table.add_row("speakers read", cell(summary.speakers_read))
        for category, count in self.by_category.items():
            table.add_row(cell(f"on disk: {category}"), cell(count))
        table.add_row("encrypted on disk (records)", cell(self.encrypted))
        table.add_row("uploaded", cell(counters.sent))
        table.add_row("retried", cell(counters.retried))
        table.add_row("received", cell(self.receiver.stats.stored))
        return table


def mac_spellings(address: str) -> list[bytes]:
    """Every common spelling of a MAC address, as bytes to look for in a file.

    ``AA:BB:…`` and ``aa:bb:…``, with ``-`` or ``.`` (Cisco ``aabb.ccdd.eeff``) or no separator,
    in ASCII and UTF-16-LE, and the six raw bytes in both orders (BLE sends them little-endian).
    """
    octets = address.replace("-", ":").split(":")
    hexes = "".join(octets)
    texts: set[str] = set()
    for case in (str.upper, str.lower):
        parts = [case(o) for o in octets]
        texts.update({":".join(parts), "-".join(parts), "".join(parts)})
        joined = case(hexes)
        texts.add(".".join(joined[i : i + 4] for i in range(0, 12, 4)))
    found = [text.encode("ascii") for text in sorted(texts)]
    found += [text.encode("utf-16-le") for text in sorted(texts)]
    raw = bytes.fromhex(hexes)
    return [*found, raw, raw[::-1]]


def scan_for_macs(files: Iterable[Path], addresses: Iterable[str]) -> tuple[int, int, list[str]]:
    """Look for every spelling of every address in the raw bytes of the files.

    Returns:
        ``(files scanned, bytes scanned, hits)``; a hit names the file (not the address).
    """
    needles = [needle for address in addresses for needle in mac_spellings(address)]
    scanned = size = 0
    hits: list[str] = []
    for file in files:
        try:
            data = file.read_bytes()
        except OSError:  # gone between the listing and the read (the WAL at a checkpoint)
            continue
        scanned += 1
        size += len(data)
        if any(needle in data for needle in needles):
            hits.append(file.name)
    return scanned, size, hits


def _files_under(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


@click.command(short_help="The whole job on simulated speakers, each stage checked.")
@click.option(
    "--devices",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Simulated speakers.",
)
@click.option(
    "--duration",
    type=click.FloatRange(1.0, 600.0),
    default=8.0,
    show_default=True,
    help="Seconds the agent runs.",
)
@click.option(
    "--faults",
    is_flag=True,
    help="Give some speakers faults (out of range, dropped links, slow or lost answers) and the "
    "receiver some failures (503, connection resets), so retries show.",
)
@pass_app
def demo(app: AppContext, /, devices: int, duration: float, faults: bool) -> None:
    r"""Discover, consent, collect, encrypt, upload over TLS and receive, on simulated speakers.

    Everything happens in a temporary home that is removed at the end: a reference receiver with
    a fresh private CA on 127.0.0.1, N simulated speakers, a consent recorded with the method
    'demo' in the demo's own ledger, and the agent. Your own installation is not touched. The
    summary checks each stage; a stage that fails its check exits 1. Ctrl-C exits 130 without a
    summary, after removing the temporary home.
    """
    live = app.console.is_terminal and not app.json
    summary = app.run(_demo(devices, duration, faults, app.console if live else None))

    def render(console: Console) -> None:
        table = Table(title="wking demo: every stage checked", show_header=False)
        for stage in summary["stages"]:
            mark = "ok" if stage["ok"] else "FAILED"
            table.add_row(cell(stage["stage"]), cell(mark), cell(stage["detail"]))
        console.print(table)
        for line in summary["errors"]:
            console.print(Text(visible(line), style="yellow"))
        console.print(f"took {summary['elapsed_s']} s; the temporary home was removed")

    app.out(summary, render)
    failed = [stage for stage in summary["stages"] if not stage["ok"]]
    if failed:
        raise StageFailed(f"demo stage {failed[0]['stage']!r} failed: {failed[0]['detail']}")


async def _demo(
    devices: int, duration: float, faults: bool, console: Console | None
) -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wking-demo-") as tmp:
        result = await _demo_in(Path(tmp), devices, duration, faults, console)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result


async def _demo_in(
    root: Path, devices: int, duration: float, faults: bool, console: Console | None
) -> dict[str, Any]:
    from wking_device import sim  # noqa: PLC0415 - bumble, aiohttp: only on this path
    from wking_device.agent import STATUS_FILE, Agent  # noqa: PLC0415
    from wking_device.collect import open_installation_gate  # noqa: PLC0415
    from wking_device.config import load_settings, resolve_paths  # noqa: PLC0415
    from wking_device.receiver import FaultPlan, Receiver  # noqa: PLC0415
    from wking_device.store import open_store  # noqa: PLC0415
    from wking_device.upload import (  # noqa: PLC0415
        TLSOptions,
        UploadTarget,
        open_uploader,
        parse_endpoint,
    )

    sim.require_bumble()
    paths = resolve_paths(root / "home")
    paths.ensure()
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    gate.grant(DEMO_CATEGORIES, method="demo")
    if gate.do_not_track:
        raise ConsentRequired(
            set(DEMO_CATEGORIES),
            reason="Do Not Track is on in this environment: the demo collects nothing; run it "
            "without DO_NOT_TRACK / WKING_DO_NOT_TRACK",
        )
    specs = [_spec(sim, index, faults=faults) for index in range(1, devices + 1)]
    addresses = [spec.address for spec in specs]
    rx_faults = FaultPlan(seed=9, status={503: 0.2}, reset_rate=0.1) if faults else None
    errors: list[str] = []
    async with (
        Receiver(root / "receiver", host="127.0.0.1", port=0, fault_plan=rx_faults) as rx,
        sim.SimWorld(specs, instant_connect=True) as world,
        open_store(paths, settings) as store,
    ):
        target = UploadTarget(
            endpoint=parse_endpoint(rx.endpoint), tls=TLSOptions(ca_file=rx.ca_file), interval=1.0
        )
        uploader = open_uploader(
            target, store=store, gate=gate, data_dir=paths.data_dir, max_attempts=8
        )
        try:
            agent = Agent(
                gate=gate,
                store=store,
                settings=settings,
                backend=world.backend,
                connect_all=True,
                interval=1.0,
                scan_seconds=0.8,
                adapter_mac="",
                paths=paths,
                uploader=uploader,
                upload_interval=1.0,
                status_file=paths.data_dir / STATUS_FILE,  # searched for MACs with the rest
            )
            view = _Live(agent, store, uploader, rx)
            run = asyncio.ensure_future(agent.run(duration))
            try:
                if console is not None:
                    await _show(view, run, console, time.monotonic() + duration)
                summary = await run
            except asyncio.CancelledError:  # Ctrl-C: the agent shuts down before its store
                agent.stop()
                run.cancel()
                await asyncio.wait({run}, timeout=_STOP_S)
                raise
            errors.extend(summary.errors)
            # what the last cycle collected goes out too (bounded; a failure is a finding);
            # the stopped uploader's claim is released in the background: wait for it first
            await _released(store)
            try:
                await asyncio.wait_for(uploader.drain(), _FINAL_DRAIN_S)
            except (WkingError, TimeoutError) as exc:
                errors.append(f"last upload: {exc}")
            stats = await store.stats()
            # the store is open: its WAL is on disk now, with the latest pages
            open_scan = scan_for_macs(_files_under(root / "home"), addresses)
        finally:
            await uploader.aclose()
    # closed: whatever SQLite checkpointed into the main file is scanned again
    closed_scan = scan_for_macs(_files_under(root / "home"), addresses)
    received = rx.export()
    # a positive control: the receiver's copy is decrypted (as uploaded, over TLS)
    control = scan_for_macs(_files_under(root / "receiver"), addresses)
    return _summary(
        devices=devices,
        faults=faults,
        collected=dict(sorted(summary.records.items())),
        by_category=dict(sorted(stats.by_category.items())),
        kept=stats.total,
        seen=summary.speakers_seen,
        read=summary.speakers_read,
        upload=uploader.counters.as_dict(),
        received=received,
        duplicates=rx.stats.duplicates,
        scans=(open_scan, closed_scan),
        searched=(len(addresses), len(mac_spellings(addresses[0])), len(control[2])),
        errors=errors,
        gate_method="demo",
    )


async def _released(store: RecordStore) -> None:
    """Wait (bounded) until no record is claimed by the uploader the agent stopped."""
    for _ in range(int(_FINAL_DRAIN_S / 0.05)):
        if not (await store.stats()).claimed:
            return
        await asyncio.sleep(0.05)


def _spec(sim: Any, index: int, *, faults: bool) -> Any:
    """Speaker ``index``; with faults, every third one misbehaves in its own way."""
    if not faults or index % 3 != 2:
        return sim.SpeakerSpec.for_index(index)
    plans = (
        sim.FaultPlan(disconnect_after_ops=4, response_delay_s=0.05),
        sim.FaultPlan(drop_responses=0.3, malformed_responses=0.2),
        sim.FaultPlan(abort_connect_attempts=frozenset({1, 2})),
    )
    return sim.SpeakerSpec.for_index(index, faults=plans[(index // 3) % len(plans)])


async def _show(view: _Live, run: asyncio.Future[Any], console: Console, end: float) -> None:
    """Redraw the live view until the run ends (terminals only)."""
    from rich.live import Live  # noqa: PLC0415

    with Live(view.table(end - time.monotonic()), console=console, transient=True) as live:
        while not run.done():
            with contextlib.suppress(WkingError):
                await view.refresh()
            live.update(view.table(end - time.monotonic()))
            await asyncio.wait({run}, timeout=_REFRESH_S)


def _summary(
    *,
    devices: int,
    faults: bool,
    collected: dict[str, int],
    by_category: dict[str, int],
    kept: int,
    seen: int,
    read: int,
    upload: dict[str, int],
    received: list[dict[str, Any]],
    duplicates: int,
    scans: tuple[tuple[int, int, list[str]], tuple[int, int, list[str]]],
    searched: tuple[int, int, int],
    errors: list[str],
    gate_method: str,
) -> dict[str, Any]:
    total = sum(collected.values())
    sent = upload["sent"]
    ids = {str(row.get("record_id")) for row in received}
    stages: list[dict[str, Any]] = []

    def stage(name: str, ok: object, detail: str) -> None:
        stages.append({"stage": name, "ok": bool(ok), "detail": detail})

    stage("discovered", seen == devices, f"{seen} of {devices} speakers seen, {read} read")
    stage(
        "consent",
        "ok",
        f"granted with method '{gate_method}': {', '.join(DEMO_CATEGORIES)}",
    )
    accounted = kept + sent + upload["purged"]
    stage(
        "collected",
        total > 0 and accounted == total,
        f"{total} records stored ({_counts(collected)}); {kept} still on disk + {sent} uploaded"
        f"{' + ' + str(upload['purged']) + ' purged' if upload['purged'] else ''} = {accounted}",
    )
    (files_open, bytes_open, hits_open), (files_closed, bytes_closed, hits_closed) = scans
    hits = sorted(set(hits_open) | set(hits_closed))
    stage(
        "encrypted",
        not hits and files_open > 0,
        f"{searched[1]} spellings of each of {searched[0]} speaker MACs searched in "
        f"{files_open} files ({bytes_open} bytes, database and WAL) while open and "
        f"{files_closed} files ({bytes_closed} bytes) after closing: "
        + (f"FOUND in {', '.join(hits)}" if hits else "none found")
        + f" (the same search finds them in {searched[2]} file(s) of the receiver's copy)",
    )
    stage(
        "uploaded",
        sent > 0,
        f"{sent} records over TLS in {upload['requests']} requests, {upload['retried']} retried",
    )
    stage(
        "received",
        len(received) == sent and len(ids) == len(received),
        f"{len(received)} distinct records in the receiver for {sent} acknowledged; "
        f"{duplicates} duplicate deliveries de-duplicated",
    )
    return {
        "devices": devices,
        "faults": faults,
        "stages": stages,
        "collected": collected,
        "on_disk": by_category,
        "upload": upload,
        "received": len(received),
        "duplicates": duplicates,
        "errors": errors,
    }


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items() if count) or "none"


def register(group: click.Group) -> None:
    """Add this module's commands to the root group."""
    group.add_command(demo)
