"""Bluetooth commands: ``scan``, ``info``, ``control``, ``devices`` and ``doctor``.

This module renders what :mod:`wking_device.ble` returns; it owns no Bluetooth logic. With
``--simulate N`` every command runs against a fresh simulated world of N speakers whose
addresses are the same in every process (``wking_device.sim``), imported only on that path.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from wking_device.bindings import Binding, Bindings
from wking_device.cli._app import AppContext, pass_app
from wking_device.errors import ConfigError, KeyMissing, UsageError, WkingError
from wking_device.protocol import EqPreset, LightMode

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from rich.console import Console

    from wking_device.ble import BleBackend, DiscoveredSpeaker, Speaker
    from wking_device.models import DeviceInfo

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
        f"{value!r} is not a Bluetooth address (AA:BB:CC:DD:EE:FF, or a UUID on macOS)",
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

    sim.require_bumble()
    async with sim.SimWorld.fleet(app.simulate, instant_connect=True) as world:
        yield world.backend


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


def _bindings_file(app: AppContext) -> Path:
    return app.paths.config_dir / "devices.bin"


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


def _speaker_row(speaker: DiscoveredSpeaker) -> dict[str, Any]:
    return {
        "address": speaker.address,
        "name": speaker.name,
        "rssi": speaker.rssi,
        "model": speaker.model,
        "address_type": speaker.address_type,
        "tx_power": speaker.tx_power,
    }


@click.command()
@click.option("--timeout", type=click.FloatRange(0.1, 120), default=None, help="Seconds to scan.")
@pass_app
def scan(app: AppContext, timeout: float | None) -> None:
    """Discover W-KING speakers nearby."""
    from wking_device.ble import discover  # noqa: PLC0415 - keep `wking --help` fast

    seconds = _scan_seconds(app, timeout)

    async def run() -> list[DiscoveredSpeaker]:
        async with bluetooth(app) as backend:
            with _progress(app, f"Scanning for {seconds:g} s…"):
                return await discover(seconds, backend=backend, adapter=app.settings.ble.adapter)

    found = app.run(run())
    rows = [_speaker_row(s) for s in found]

    def render(console: Console) -> None:
        if not rows:
            console.print("No W-KING speakers found.")
            return
        table = Table("Address", "Name", "Model", "RSSI")
        for row in rows:
            table.add_row(row["address"], row["name"] or "", row["model"] or "", str(row["rssi"]))
        console.print(table)

    app.out(rows, render)


@click.command()
@click.argument("address", callback=_address)
@pass_app
def info(app: AppContext, address: str) -> None:
    """Connect to the speaker at ADDRESS and show what it tells about itself."""
    result = app.run(_with_speaker(app, address, lambda speaker: speaker.read_info()))
    data = result.model_dump()

    def render(console: Console) -> None:
        table = Table(show_header=False)
        for key, value in data.items():
            table.add_row(key, "" if value is None else str(value))
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


@click.group()
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
    app.out(data, lambda console: console.print(f"{address}: {what} done"))


def _bare(speaker: Speaker) -> DeviceInfo:
    from wking_device.models import DeviceInfo  # noqa: PLC0415

    return DeviceInfo(address=speaker.address, name=speaker.name, model=speaker.model)


@control.command()
@click.argument("level", type=click.IntRange(0, 100))
@pass_app
def volume(app: AppContext, level: int) -> None:
    """Set the volume, LEVEL 0-100."""
    _control(app, lambda speaker: speaker.set_volume(level), f"volume {level}")


@control.command(help=f"Choose an EQ preset: {', '.join(_choice(EqPreset).choices)}.")
@click.argument("preset", type=_choice(EqPreset), metavar="PRESET")
@pass_app
def eq(app: AppContext, preset: str) -> None:
    value = EqPreset[preset.upper().replace("-", "_")]
    _control(app, lambda speaker: speaker.set_eq(value), f"eq {preset}")


@control.command(help=f"Choose a light mode: {', '.join(_choice(LightMode).choices)}.")
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


@click.group()
def devices() -> None:
    """The speakers the agent looks after (bindings are stored encrypted)."""


@devices.command(name="list")
@pass_app
def devices_list(app: AppContext) -> None:
    """List bound speakers."""
    # Nothing bound yet: a read-only command creates no key store.
    bound = open_bindings(app).load() if _bindings_file(app).exists() else []
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
            table.add_row(row["address"], row["name"] or "", row["model"] or "", row["alias"] or "")
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
        lambda console: console.print(f"Bound {seen.name or seen.address}."),
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
        lambda console: console.print(f"Unbound {address}."),
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


def _config_state(app: AppContext) -> str:
    app.settings  # noqa: B018 - reading them is the check (ConfigError when malformed)
    return "ok" if app.paths.config_file.exists() else "no file (defaults)"


@click.command()
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
                table.add_row(key, Text("".join(c if c.isprintable() else "?" for c in shown)))
                continue
            table.add_row(key, ", ".join(value) if isinstance(value, list) else str(value))
        console.print(table)
        if not adapters and not simulate:
            console.print(
                "No Bluetooth adapter found; use --simulate N to run against simulated speakers."
            )

    app.out(report, render)
    if problems:
        raise problems[0]


@contextlib.contextmanager
def _progress(app: AppContext, message: str) -> Any:
    """A spinner on stderr for interactive use; nothing with --json or when not a terminal."""
    if app.json or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console  # noqa: PLC0415

    with Console(stderr=True).status(message):
        yield


def register(group: click.Group) -> None:
    """Add this module's commands to the root group."""
    for command in (scan, info, control, devices, doctor):
        group.add_command(command)
