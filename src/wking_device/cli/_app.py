"""The root command group, its global options, and error-to-exit-code handling."""

from __future__ import annotations

import asyncio
import logging
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson
from rich.console import Console

from wking_device._redact import install_redaction
from wking_device.config import Paths, Settings, load_settings, resolve_paths
from wking_device.errors import WkingError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["AppContext", "cli", "pass_app"]

_T = TypeVar("_T")


@dataclass
class AppContext:
    """What every command gets: global options, paths, settings and output helpers.

    Attributes:
        home: ``--home``, or ``None`` for ``$WKING_HOME`` / platform directories.
        simulate: Number of simulated speakers (``--simulate N``); 0 means a real adapter.
        json: Print machine-readable JSON instead of tables.
        verbose: Show debug logs and tracebacks.
    """

    home: Path | None = None
    simulate: int = 0
    json: bool = False
    verbose: bool = False
    console: Console = field(default_factory=lambda: Console(highlight=False))
    _settings: Settings | None = None

    @property
    def paths(self) -> Paths:
        """The installation's directories."""
        return resolve_paths(self.home)

    @property
    def settings(self) -> Settings:
        """The installation's settings, read once (raises ``ConfigError`` when malformed)."""
        if self._settings is None:
            self._settings = load_settings(self.paths)
        return self._settings

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine to completion in a fresh event loop."""
        return asyncio.run(coro)

    def out(self, data: Any, render: Callable[[Console], None] | None = None) -> None:
        """Print a result: JSON with ``--json`` (or when there is no renderer), else a rendering.

        Args:
            data: A JSON-serialisable value (dicts, lists, pydantic models via ``model_dump``).
            render: Draws the human form on the console.
        """
        if self.json or render is None:
            sys.stdout.write(
                orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
            )
            sys.stdout.write("\n")
            sys.stdout.flush()
        else:
            render(self.console)


pass_app = click.make_pass_decorator(AppContext)


class _Group(click.Group):
    """A group that turns library errors into one line on stderr and a distinct exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WkingError as exc:
            app = ctx.find_object(AppContext)
            if app is not None and app.verbose:
                traceback.print_exc(file=sys.stderr)
            click.echo(f"error: {exc}", err=True)
            raise click.exceptions.Exit(exc.exit_code) from exc
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(130) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="WKING_HOME",
    help="Keep everything of this installation under DIR (default: platform directories).",
)
@click.option(
    "--simulate",
    "simulate",
    type=click.IntRange(0, 1000),
    default=None,
    metavar="N",
    help="Run against N simulated speakers instead of a Bluetooth adapter (env WKING_SIMULATE).",
)
@click.option("--json", "json_output", is_flag=True, help="Print machine-readable JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and tracebacks on errors.")
@click.version_option(package_name="wking-device", prog_name="wking")
@click.pass_context
def cli(
    ctx: click.Context,
    home: Path | None,
    simulate: int | None,
    json_output: bool,
    verbose: bool,
) -> None:
    """Discover, control and (with your consent) collect logs from W-KING speakers."""
    app = AppContext(home=home, json=json_output, verbose=verbose)
    if simulate is None:
        # WKING_SIMULATE (read through the settings, so a malformed value is a clear error)
        simulate = app.settings.simulate
    app.simulate = simulate
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # bumble's DEBUG output is a dump of every HCI packet of the simulator: too much for -v.
    logging.getLogger("bumble").setLevel(logging.INFO)
    # No MAC address or key material in any log line, at any level (DESIGN §4, §9).
    install_redaction(everything=True)
    ctx.obj = app


def _register_commands() -> None:
    # Each command module adds its commands to the group; imported here so `cli` is complete.
    from wking_device.cli import _agent, _ble, _consent, _data  # noqa: PLC0415

    for module in (_ble, _consent, _data, _agent):
        module.register(cli)


_register_commands()
