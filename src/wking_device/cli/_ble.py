"""Bluetooth commands: ``scan``, ``info``, ``control``, ``devices`` and ``doctor``.

This module renders what :mod:`wking_device.ble` returns; it owns no Bluetooth logic. With
``--simulate N`` every command runs against a fresh simulated world of N speakers whose
addresses are the same in every process (``wking_device.sim``), imported only on that path; what a
command changes of them (volume, EQ, light) is kept per home (:mod:`wking_device.sim._saved`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import click
from rich.table import Table

from wking_device.bindings import Binding, Bindings
from wking_device.cli._app import AppContext, Seconds, pass_app, write_json
from wking_device.cli._term import cell, for_stderr, json_line, make_console, markup
from wking_device.errors import ConfigError, KeyMissing, StorageError, UsageError, WkingError
from wking_device.protocol import EqPreset, LightMode

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from rich.console import Console

    from wking_device.ble import AvailabilityEvent, BleBackend, DiscoveredSpeaker, Speaker
    from wking_device.config import Paths
    from wking_device.models import DeviceInfo
    from wking_device.sim._saved import SavedFleet, SavedSpeaker

__all__ = ["bluetooth", "open_bindings", "register"]

_T = TypeVar("_T")


_MAC = re.compile(r"[0-9A-F]{2}(?::[0-9A-F]{2}){5}")
_UUID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")


def _check_address(value: str) -> str:
    """Check a Bluetooth address as bleak takes it: ``AA:BB:CC:DD:EE:FF``, or a UUID on macOS.

    A typo is a usage error at once, not a scan that times out and advises moving the speaker
    closer.

    Returns:
        The address, upper case.

    Raises:
        UsageError: It is neither.
    """
    text = value.strip().upper()
    if _MAC.fullmatch(text) or _UUID.fullmatch(text):
        return text
    raise UsageError(
        f"{value!r} is not a Bluetooth address "
        "(six pairs of hex digits joined by colons, or a UUID on macOS)",
        remedy="'wking scan' lists the speakers nearby",
    )


def _address(ctx: click.Context, param: click.Parameter, value: str) -> str:
    del ctx, param
    try:
        return _check_address(value)
    except UsageError as exc:
        raise click.BadParameter(str(exc)) from exc


@contextlib.asynccontextmanager
async def bluetooth(app: AppContext) -> AsyncIterator[BleBackend | None]:
    """Yield the bleak backend for this invocation: a simulated world's, or the platform's.

    Args:
        app: The CLI context (``app.simulate`` speakers are simulated when non-zero).
    """
    if not app.simulate:
        yield None
        return
    from wking_device import sim  # noqa: PLC0415 - bumble is imported only with --simulate
    from wking_device.sim._saved import (  # noqa: PLC0415
        STATE_FILE,
        SavedFleet,
        SavedSpeaker,
        changes,
    )

    sim.require_bumble()
    # The speakers' volume, EQ and light are kept per home between processes (issue 7, item
    # 20); a read-only command writes nothing, as nothing changed.
    saved = SavedFleet(app.paths.data_dir / STATE_FILE)
    kept, problem = saved.load()
    if problem is not None:
        click.echo(
            for_stderr(
                f"warning: ignoring {saved.path} ({problem}); the simulated speakers start from "
                "their defaults"
            ),
            err=True,
        )
    specs = [
        sim.SpeakerSpec.for_index(index, **(kept[index].overrides() if index in kept else {}))
        for index in range(1, app.simulate + 1)
    ]

    def state_of(spec: sim.SpeakerSpec | sim.SimSpeaker) -> SavedSpeaker:
        if isinstance(spec, sim.SpeakerSpec):
            return SavedSpeaker(volume=spec.volume, eq=spec.eq, light=spec.light)
        state = spec.state
        return SavedSpeaker(volume=state.volume, eq=state.eq, light=state.light)

    before = {index: state_of(spec) for index, spec in enumerate(specs, start=1)}
    async with sim.SimWorld(specs, instant_connect=True) as world:
        try:
            yield world.backend
        finally:
            changed = changes(
                before, ((i, state_of(s)) for i, s in enumerate(world.speakers, start=1))
            )
            if changed:
                _save_sim_state(app, saved, changed)


def _save_sim_state(app: AppContext, saved: SavedFleet, changed: dict[int, SavedSpeaker]) -> None:
    """Keep what a command changed; a failure to write is a warning, not the command's error."""
    try:
        app.paths.ensure()
        saved.save(changed)
    except (WkingError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        click.echo(
            for_stderr(
                f"warning: the simulated speakers' state was not kept in {saved.path} ({reason})"
            ),
            err=True,
        )


def open_bindings(app: AppContext) -> Bindings:
    """The installation's encrypted device bindings.

    The key store is created only for a new installation. When a bindings file, a consent
    ledger or a record database exists, a missing key store is an error (``KeyMissing``, exit
    6): a fresh key would open none of them and make the ledger look tampered with.
    """
    from wking_device.crypto import open_key_store  # noqa: PLC0415 - only these commands need it

    paths = app.paths
    paths.ensure()
    keys = open_key_store(paths, create=not _has_encrypted_files(app))
    return Bindings(_bindings_file(app), keys.secret("device-bindings"))


def _read_bindings(app: AppContext) -> Bindings | None:
    """The bindings for reading only: creates no directory or key (``None``: nothing bound)."""
    from wking_device.crypto import open_key_store  # noqa: PLC0415

    if not _bindings_file(app).exists():
        return None
    keys = open_key_store(app.paths, create=False)
    return Bindings(_bindings_file(app), keys.secret("device-bindings"))


def _bindings_file(app: AppContext) -> Path:
    from wking_device.bindings import bindings_path  # noqa: PLC0415

    return bindings_path(app.paths)


def _has_encrypted_files(app: AppContext) -> bool:
    """Whether this installation already keeps something only its key store can open."""
    from wking_device.consent import ledger_path  # noqa: PLC0415
    from wking_device.store import DB_FILE  # noqa: PLC0415

    paths = app.paths
    files = (_bindings_file(app), ledger_path(paths), paths.data_dir / DB_FILE)
    return any(file.exists() for file in files)


def _scan_seconds(app: AppContext, timeout: float | None) -> float:
    """How long to scan: the option, else the setting.

    Simulated speakers advertise every 100 ms, so a simulated scan is capped at 1.5 s.
    """
    if timeout is not None:
        return timeout
    seconds = app.settings.ble.scan_timeout
    return min(seconds, 1.5) if app.simulate else seconds


_HEADERS: Final = {
    "address": "Address",
    "name": "Name",
    "model": "Model",
    "rssi": "RSSI",
    "adapter": "Adapter",
}


def _speaker_row(speaker: DiscoveredSpeaker) -> dict[str, Any]:
    return {
        "address": speaker.address,
        "name": speaker.name,
        "rssi": speaker.rssi,
        "model": speaker.model,
        "address_type": speaker.address_type,
        "tx_power": speaker.tx_power,
        "adapter": speaker.adapter,
    }


@click.command()
@click.option("--timeout", type=Seconds(0.1, 120), default=None, help="Seconds to scan.")
@click.option(
    "--watch",
    is_flag=True,
    help="Keep scanning: one line per speaker that appears, changes (name, model, RSSI by 5 dB "
    "or more) or goes silent, until Ctrl-C or --duration.",
)
@click.option(
    "--duration",
    type=Seconds(0.1, 31_536_000),
    default=None,
    help="With --watch: stop after this many seconds.",
)
@pass_app
def scan(app: AppContext, timeout: float | None, watch: bool, duration: float | None) -> None:
    """Discover W-KING speakers nearby."""
    if watch:
        if timeout is not None:
            raise UsageError("--timeout is for a single scan; --watch ends with --duration")
        _watch(app, duration)
        return
    if duration is not None:
        raise UsageError("--duration goes with --watch; a single scan takes --timeout")
    from wking_device.ble import discover  # noqa: PLC0415 - keep `wking --help` fast

    seconds = _scan_seconds(app, timeout)

    async def run() -> list[DiscoveredSpeaker]:
        async with bluetooth(app) as backend:
            with _progress(app, f"Scanning for {seconds:g} s…"):
                ble = app.settings.ble
                if ble.adapters:  # `[ble] adapters`: every one of them scans
                    return await discover(seconds, backend=backend, adapters=ble.adapters)
                return await discover(seconds, backend=backend, adapter=ble.adapter)

    found = app.run(run())
    rows = [_speaker_row(s) for s in found]
    ble = app.settings.ble

    def render(console: Console) -> None:
        if not rows:
            console.print("No W-KING speakers found.")
            return
        # with several adapters (`[ble] adapters`), which one heard each speaker
        keys = ["address", "name", "model", "rssi"] + (["adapter"] if ble.adapters else [])
        table = Table(*(_HEADERS[key] for key in keys))
        for row in rows:
            table.add_row(*(cell(row[key]) for key in keys))
        console.print(table)

    app.out(rows, render)


def _watch(app: AppContext, duration: float | None) -> None:
    """``scan --watch``: a tracker's events, one line (or JSON object) each, as they come."""
    import asyncio  # noqa: PLC0415 - keep `wking --help` fast

    from wking_device.ble import SpeakerTracker  # noqa: PLC0415

    ble = app.settings.ble
    adapters = ble.adapters or None  # `[ble] adapters`: every one of them listens, as in a scan
    adapter = None if adapters else ble.adapter

    async def run() -> None:
        async with (
            bluetooth(app) as backend,
            SpeakerTracker(backend=backend, adapter=adapter, adapters=adapters) as tracker,
            tracker.events() as stream,
        ):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(duration):
                    async for event in stream:
                        _print_change(app, event, via=adapters is not None)

    app.run(run())


def _change_row(event: AvailabilityEvent) -> dict[str, Any]:
    from wking_device.ble import SpeakerAppeared, SpeakerChanged  # noqa: PLC0415

    speaker = event.speaker
    row: dict[str, Any] = {
        "event": (
            "appeared"
            if isinstance(event, SpeakerAppeared)
            else "changed"
            if isinstance(event, SpeakerChanged)
            else "unavailable"
        ),
        "address": speaker.address,
        "name": speaker.name,
        "model": speaker.model,
        "rssi": speaker.rssi,
        "tx_power": speaker.tx_power,
        "interval_s": None if speaker.interval is None else round(speaker.interval, 4),
        "available": speaker.available,
        "adapter": speaker.adapter,
    }
    if isinstance(event, SpeakerAppeared):
        row["returned"] = event.returned
    elif isinstance(event, SpeakerChanged):
        row["changed"] = list(event.changed)
    else:
        row["silent_s"] = round(event.silent_s, 3)
    return row


def _print_change(app: AppContext, event: AvailabilityEvent, *, via: bool = False) -> None:
    """One line for a tracker event; ``via``: name the adapter that heard it (several scan)."""
    row = _change_row(event)
    if app.json:
        write_json(json_line(row).encode() + b"\n")
        return
    mark = {"appeared": "+", "changed": "~", "unavailable": "-"}[row["event"]]
    what = {
        "appeared": "back" if row.get("returned") else "appeared",
        "changed": f"changed: {', '.join(row.get('changed', ()))}",
        "unavailable": f"unavailable, silent {row.get('silent_s', 0):.1f} s",
    }[row["event"]]
    app.console.print(
        f"{mark} {markup(row['address'])}  {markup(row['name'] or '-')}  "
        f"{markup(row['model'] or '-')}  {row['rssi']} dBm  {what}"
        + (f"  via {markup(row['adapter'] or '-')}" if via else "")
    )


@click.command(short_help="Show what the speaker at ADDRESS tells about itself.")
@click.argument("address", callback=_address)
@pass_app
def info(app: AppContext, address: str) -> None:
    """Connect to the speaker at ADDRESS and show what it tells about itself."""
    result = app.run(_with_speaker(app, address, lambda speaker: speaker.read_info()))
    data = result.model_dump()

    def render(console: Console) -> None:
        table = Table(show_header=False)
        for key, value in data.items():
            table.add_row(key, cell(value))
        console.print(table)

    app.out(data, render)


async def _with_speaker(
    app: AppContext, address: str, action: Callable[[Speaker], Awaitable[DeviceInfo]]
) -> DeviceInfo:
    from wking_device.ble import Speaker  # noqa: PLC0415

    async with bluetooth(app) as backend:
        with _progress(app, f"Connecting to {address}…"):
            async with Speaker(
                address,
                backend=backend,
                settings=app.settings.ble,
                scan_timeout=_scan_seconds(app, None),
            ) as speaker:
                return await action(speaker)


def _choice(enum_cls: type[EqPreset] | type[LightMode]) -> click.Choice[str]:
    return click.Choice([member.name.lower().replace("_", "-") for member in enum_cls])


@click.group(short_help="Control the speaker at ADDRESS: volume, eq, light, power-off.")
@click.argument("address")  # checked when the action runs, so 'control ADDRESS eq --help' works
@click.pass_context
def control(ctx: click.Context, address: str) -> None:
    """Control the speaker at ADDRESS: volume, eq, light or power-off."""
    ctx.meta["wking.address"] = address


def _control(app: AppContext, action: Callable[[Speaker], Awaitable[None]], what: str) -> None:
    address = _check_address(click.get_current_context().meta["wking.address"])

    async def act(speaker: Speaker) -> DeviceInfo:
        await action(speaker)
        return await speaker.read_info() if what != "power-off" else _bare(speaker)

    result = app.run(_with_speaker(app, address, act))
    data = {"address": address, "action": what, "ok": True, "state": result.model_dump()}
    app.out(data, lambda console: console.print(f"{markup(address)}: {markup(what)} done"))


def _bare(speaker: Speaker) -> DeviceInfo:
    from wking_device.models import DeviceInfo  # noqa: PLC0415

    return DeviceInfo(address=speaker.address, name=speaker.name, model=speaker.model)


@control.command()
@click.argument("level", type=click.IntRange(0, 100))
@pass_app
def volume(app: AppContext, level: int) -> None:
    """Set the volume, LEVEL 0-100."""
    _control(app, lambda speaker: speaker.set_volume(level), f"volume {level}")


@control.command(
    short_help="Choose an EQ preset (--help lists them).",
    help=f"Choose an EQ preset: {', '.join(_choice(EqPreset).choices)}.",
)
@click.argument("preset", type=_choice(EqPreset), metavar="PRESET")
@pass_app
def eq(app: AppContext, preset: str) -> None:
    value = EqPreset[preset.upper().replace("-", "_")]
    _control(app, lambda speaker: speaker.set_eq(value), f"eq {preset}")


@control.command(
    short_help="Choose a light mode (--help lists them).",
    help=f"Choose a light mode: {', '.join(_choice(LightMode).choices)}.",
)
@click.argument("mode", type=_choice(LightMode), metavar="MODE")
@pass_app
def light(app: AppContext, mode: str) -> None:
    value = LightMode[mode.upper().replace("-", "_")]
    _control(app, lambda speaker: speaker.set_light(value), f"light {mode}")


@control.command(name="power-off")
@pass_app
def power_off(app: AppContext) -> None:
    """Switch the speaker off."""
    _control(app, lambda speaker: speaker.power_off(), "power-off")


@click.group(short_help="Bind, list and unbind the speakers the agent looks after.")
def devices() -> None:
    """The speakers the agent looks after (bindings are stored encrypted)."""


@devices.command(name="list")
@pass_app
def devices_list(app: AppContext) -> None:
    """List bound speakers."""
    # A read-only command creates nothing (no key store, no directory) and works on a
    # read-only home.
    bindings = _read_bindings(app)
    bound = bindings.load() if bindings is not None else []
    rows: list[dict[str, Any]] = [
        {
            "address": b.address,
            "name": b.name,
            "model": b.model,
            "alias": b.alias,
            "bound_at": b.bound_at,
        }
        for b in bound
    ]

    def render(console: Console) -> None:
        if not rows:
            console.print("No speakers bound. Bind one with 'wking devices bind ADDRESS'.")
            return
        table = Table("Address", "Name", "Model", "Alias")
        for row in rows:
            table.add_row(*(cell(row[key]) for key in ("address", "name", "model", "alias")))
        console.print(table)

    app.out(rows, render)


@devices.command()
@click.argument("address", callback=_address)
@click.option("--alias", help="A name of your choice for this speaker.")
@pass_app
def bind(app: AppContext, address: str, alias: str | None) -> None:
    """Bind the speaker at ADDRESS (it must be advertising)."""
    from wking_device.ble import find_speaker  # noqa: PLC0415

    async def locate() -> DiscoveredSpeaker:
        async with bluetooth(app) as backend:
            with _progress(app, f"Looking for {address}…"):
                return await find_speaker(
                    address,
                    timeout=_scan_seconds(app, None),
                    backend=backend,
                    adapter=app.settings.ble.adapter,
                )

    seen = app.run(locate())
    binding = Binding(address=seen.address, name=seen.name, model=seen.model, alias=alias)
    open_bindings(app).bind(binding)
    app.out(
        {"address": seen.address, "name": seen.name, "model": seen.model, "bound": True},
        lambda console: console.print(f"Bound {markup(seen.name or seen.address)}."),
    )


@devices.command()
@click.argument("address", callback=_address)
@pass_app
def unbind(app: AppContext, address: str) -> None:
    """Unbind the speaker at ADDRESS."""
    if not _bindings_file(app).exists() or not open_bindings(app).unbind(address):
        raise UsageError(f"{address} is not bound", remedy="see 'wking devices list'")
    app.out(
        {"address": address, "bound": False},
        lambda console: console.print(f"Unbound {markup(address)}."),
    )


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _adapters() -> list[str]:
    root = Path("/sys/class/bluetooth")
    return sorted(p.name for p in root.glob("hci*")) if root.exists() else []


def _key_store_level(app: AppContext) -> str:
    from wking_device.crypto import key_dir, open_key_store  # noqa: PLC0415

    try:
        return open_key_store(app.paths, create=False).level
    except KeyMissing:
        if (key_dir(app.paths) / "keystore.json").exists() or _has_encrypted_files(app):
            raise  # a key store, or data only the missing key opens, exists: not a first run
        return "none (created on first use)"


def _check(problems: list[WkingError], probe: Callable[[], _T]) -> _T | str:
    """Run one check of ``doctor``: its value, or the error's message (kept for the exit code)."""
    try:
        return probe()
    except WkingError as exc:
        problems.append(exc)
        return f"error: {exc}"


def _home_writable(paths: Paths) -> bool:
    """Whether the installation's files can be written (the nearest existing directory)."""
    directory = paths.home if paths.home is not None else paths.data_dir
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return False
    except OSError:
        return False
    return os.access(directory, os.W_OK)


def _check_writable(paths: Paths) -> bool:
    if not _home_writable(paths):
        where = paths.home if paths.home is not None else paths.data_dir
        raise StorageError(
            f"the home {where} is not writable (read-only file system or no permission): "
            "commands that only report work, collecting and consent changes do not",
            remedy="remount it read-write, fix its permissions, or choose another --home",
        )
    return True


def _permissions(paths: Paths) -> str:
    from wking_device.config import permission_problems  # noqa: PLC0415

    problems = permission_problems(paths)
    if problems:
        raise StorageError(
            "; ".join(problems), remedy="others could read or change them: fix the modes"
        )
    return "ok"


def _config_state(app: AppContext) -> str:
    app.settings  # noqa: B018 - reading them is the check (ConfigError when malformed)
    return "ok" if app.paths.config_file.exists() else "no file (defaults)"


@click.command(short_help="Check Python, Bluetooth, paths, config and key store.")
@pass_app
def doctor(app: AppContext) -> None:
    """Check this machine: Python, bleak, bumble, adapter, config, paths, key store, collector.

    Every check is reported; when one fails, the command exits with that error's code.
    """
    paths = app.paths
    adapters = _adapters()
    problems: list[WkingError] = []
    config = _check(problems, lambda: _config_state(app))
    try:
        simulate: int | None = app.simulate
    except ConfigError:
        simulate = None  # reported under "config"
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": sys.platform,
        "wking_device": _version("wking-device"),
        "bleak": _version("bleak"),
        "bumble": _version("bumble"),
        "adapters": adapters,
        "adapter_present": bool(adapters),
        "simulate": simulate,
        "home": str(paths.home) if paths.home else None,
        "config_dir": str(paths.config_dir),
        "config": config,
        "data_dir": str(paths.data_dir),
        "key_store": _check(problems, lambda: _key_store_level(app)),
        "home_writable": _check(problems, lambda: _check_writable(paths)) is True,
        "permissions": _check(problems, lambda: _permissions(paths)),
    }
    # the collector, when one is configured (a malformed config is reported above)
    from wking_device.cli._upload import check_endpoint  # noqa: PLC0415

    report["upload"] = (
        None if str(config).startswith("error") else _check(problems, lambda: check_endpoint(app))
    )

    def render(console: Console) -> None:
        table = Table(show_header=False)
        for key, value in report.items():
            if isinstance(value, dict):  # the collector's certificate: untrusted text
                shown = ", ".join(f"{k}={v}" for k, v in value.items())
                table.add_row(key, cell(shown))
                continue
            # cell: a value is shown as it is, never read as markup ("[ble.scan_timeout]")
            table.add_row(key, cell(_doctor_text(key, value)))
        console.print(table)
        if not adapters and not simulate:
            console.print(
                "No Bluetooth adapter found; use --simulate N to run against simulated speakers."
            )

    app.out(report, render)
    if problems:
        raise problems[0]


def _doctor_text(key: str, value: Any) -> str:
    """What ``doctor`` shows for one value of its report, in words where JSON has null or []."""
    from wking_device.sim._compat import CHECKOUT_HINT, INSTALL_HINT  # noqa: PLC0415

    if key in {"home", "config_dir", "data_dir"}:
        if value is None:
            return "none: the platform's user directories (config_dir, data_dir)"
        return value if Path(value).exists() else f"{value} (not created yet)"
    if value is None:
        return {
            "bumble": f"not installed (only --simulate needs it: {INSTALL_HINT}, or "
            f"{CHECKOUT_HINT})",
            "wking_device": "unknown (not installed: running from a source tree?)",
            "simulate": "unknown (the config file is malformed: see config)",
        }.get(key, "unknown")
    if isinstance(value, list):
        return ", ".join(value) if value else "none found"
    return str(value)


@contextlib.contextmanager
def _progress(app: AppContext, message: str) -> Any:
    """A spinner on stderr for interactive use; nothing with --json or when not a terminal.

    Like every line on standard error, the message is redacted (no MAC address) and escaped.
    """
    if app.json or not sys.stderr.isatty():
        yield
        return
    with make_console(stderr=True).status(markup(for_stderr(message))):
        yield


def register(group: click.Group) -> None:
    """Add this module's commands to the root group."""
    for command in (scan, info, control, devices, doctor):
        group.add_command(command)
