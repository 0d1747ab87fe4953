"""The root command group, its global options, and error-to-exit-code handling."""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson
from rich.console import Console

from wking_device._redact import install_redaction, redact
from wking_device.config import Paths, Settings, load_settings, resolve_paths
from wking_device.errors import UsageError, WkingError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

__all__ = ["AppContext", "cli", "parse_categories", "pass_app"]

_T = TypeVar("_T")


@dataclass
class AppContext:
    """What every command gets: global options, paths, settings and output helpers.

    Attributes:
        home: ``--home``, or ``None`` for ``$WKING_HOME`` / platform directories.
        json: Print machine-readable JSON instead of tables.
        verbose: Show debug logs and tracebacks.
    """

    home: Path | None = None
    json: bool = False
    verbose: bool = False
    console: Console = field(default_factory=lambda: Console(highlight=False))
    _simulate: int | None = None
    _settings: Settings | None = None

    @property
    def simulate(self) -> int:
        """Number of simulated speakers (``--simulate N``, else the settings); 0: a real adapter.

        Read from the settings only when a command asks, so commands that need no settings
        (``doctor``, ``policy``) still run with a malformed config file.
        """
        if self._simulate is None:
            self._simulate = self.settings.simulate
        return self._simulate

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

        JSON goes to standard output as UTF-8 bytes whatever the terminal's encoding (RFC 8259
        §8.1), so a speaker name that the locale cannot encode does not break ``--json``.

        Args:
            data: A JSON-serialisable value (dicts, lists, pydantic models via ``model_dump``).
            render: Draws the human form on the console.
        """
        if self.json or render is None:
            text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
            stdout = sys.stdout
            stdout.flush()
            binary = getattr(stdout, "buffer", None)
            if binary is not None:
                binary.write(text + b"\n")
                binary.flush()
            else:
                stdout.write(text.decode() + "\n")
                stdout.flush()
        else:
            render(self.console)


pass_app = click.make_pass_decorator(AppContext)


def parse_categories(values: tuple[str, ...]) -> list[str]:
    """Accept ``a b`` and ``a,b``; keep order, drop duplicates, reject unknown ids (exit 2)."""
    from wking_device.policy import CATALOG, CATEGORY_IDS  # noqa: PLC0415 - commands that need it

    result: list[str] = []
    for name in (part.strip() for value in values for part in value.split(",")):
        if not name:
            continue
        if name not in CATALOG:
            raise UsageError(
                f"unknown data category: {name!r}", remedy=f"use one of: {', '.join(CATEGORY_IDS)}"
            )
        if name not in result:
            result.append(name)
    return result


class _Group(click.Group):
    """A group that turns every error into one line on stderr and an exit code.

    Library errors exit with their own code (:attr:`WkingError.exit_code`); an unexpected
    exception — a bug, or an operating-system error no layer translated — exits 1 with its type
    and message. ``-v`` adds the traceback. click's own exceptions (usage errors, ``Abort``,
    ``Exit``) and a closed standard output (``EPIPE``, which click turns into a quiet exit 1)
    pass through.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except WkingError as exc:
            _print_error(ctx, str(exc))
            raise click.exceptions.Exit(exc.exit_code) from exc
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(130) from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise
            _print_error(ctx, str(exc))
            raise click.exceptions.Exit(1) from exc
        except Exception as exc:  # the last line of defence: one line, no traceback
            _print_error(
                ctx,
                f"unexpected {type(exc).__name__}: {exc} "
                "(a bug in wking: run with -v for the traceback and please report it)",
            )
            raise click.exceptions.Exit(1) from exc


def _print_error(ctx: click.Context, message: str) -> None:
    """Print the traceback of the exception being handled (with ``-v``), then one line."""
    # stderr ends up in the journal under systemd: no MAC address there either (DESIGN §9);
    # the user knows which address they typed.
    app = ctx.find_object(AppContext)
    if app is not None and app.verbose:
        sys.stderr.write(redact(traceback.format_exc()))
    click.echo(f"error: {redact(message)}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="WKING_HOME",
    metavar="DIR",
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
    # --simulate unset: WKING_SIMULATE is read through the settings when a command needs it
    app = AppContext(home=home, json=json_output, verbose=verbose, _simulate=simulate)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # -v: our debug logs and bleak's, not bumble's (it dumps every HCI and ATT packet of the
    # simulator, some through the root logger, which therefore stays at WARNING).
    for name in _VERBOSE_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.NOTSET)
    _redact_logs()
    ctx.obj = app


@functools.cache
def _redact_logs() -> None:
    """No MAC address or key material in any log line, at any level (DESIGN §4, §9).

    Once per process: each ``install_redaction`` wraps the log record factory again, so a
    process that runs the command many times (tests, a program calling ``main``) would nest
    one wrapper per run until logging hits the recursion limit.
    """
    install_redaction(everything=True)


_VERBOSE_LOGGERS = ("wking_device", "bleak", "bleak_retry_connector")


def _register_commands() -> None:
    # Each command module adds its commands to the group; imported here so `cli` is complete.
    from wking_device.cli import _agent, _ble, _consent, _data, _receiver, _upload  # noqa: PLC0415

    for module in (_ble, _consent, _data, _agent, _receiver, _upload):
        module.register(cli)


_register_commands()
