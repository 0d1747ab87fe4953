"""The root command group, its global options, and error-to-exit-code handling."""

from __future__ import annotations

import errno
import functools
import importlib
import logging
import math
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from wking_device._redact import install_redaction, redact_macs, redact_record
from wking_device.cli._signals import default_behaviour, defer
from wking_device.cli._term import for_stderr, json_bytes, json_line, make_console, visible
from wking_device.errors import UsageError, WkingError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from rich.console import Console

    from wking_device.config import Paths, Settings

__all__ = ["AppContext", "cli", "parse_categories", "pass_app", "write_json"]

_T = TypeVar("_T")


@dataclass
class AppContext:
    """What every command gets: global options, paths, settings and output helpers.

    Attributes:
        home: ``--home``, or ``None`` for ``$WKING_HOME`` / platform directories.
        json: Print machine-readable JSON instead of tables.
        verbose: Show debug logs and tracebacks.
        log_format: ``--log-format``: ``"text"`` or ``"json"`` (one JSON object a line).
    """

    home: Path | None = None
    json: bool = False
    verbose: bool = False
    log_format: str = "text"
    console: Console = field(default_factory=make_console)
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
        from wking_device.config import resolve_paths  # noqa: PLC0415 - pydantic: ~130 ms

        return resolve_paths(self.home)

    @property
    def settings(self) -> Settings:
        """The installation's settings, read once (raises ``ConfigError`` when malformed)."""
        if self._settings is None:
            from wking_device.config import load_settings  # noqa: PLC0415 - pydantic: ~130 ms

            self._settings = load_settings(self.paths)
        return self._settings

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine to completion in a fresh event loop.

        Ctrl-C cancels it (``asyncio.run`` does, so it cleans up) and the command then prints
        ``interrupted`` and exits 130; once it is done, signals are recorded again (the command
        is printing its result and the process ending with its exit code).
        """
        try:
            import asyncio  # noqa: PLC0415 - ~20 ms that `wking --help` does not need

            return asyncio.run(coro)
        finally:
            # a Ctrl-C before asyncio.run started it (during the import): close the coroutine,
            # or Python warns at exit that it "was never awaited" (a no-op once it ran)
            coro.close()
            defer()

    def out(self, data: Any, render: Callable[[Console], None] | None = None) -> None:
        """Print a result: JSON with ``--json`` (or when there is no renderer), else a rendering.

        JSON goes to standard output as UTF-8 bytes whatever the terminal's encoding (RFC 8259
        §8.1), so a speaker name that the locale cannot encode does not break ``--json``; its
        strings are exact, with every control character escaped (:func:`json_bytes`).

        Args:
            data: A JSON-serialisable value (dicts, lists, pydantic models via ``model_dump``).
            render: Draws the human form on the console. Every string in it that the CLI did
                not write itself goes through :mod:`wking_device.cli._term` (``cell``,
                ``markup``, ``visible``).
        """
        if self.json or render is None:
            write_json(json_bytes(data))
        else:
            render(self.console)


def write_json(data: bytes) -> None:
    """Write JSON bytes (from :func:`~wking_device.cli._term.json_bytes`) to standard output."""
    stdout = sys.stdout
    stdout.flush()
    binary = getattr(stdout, "buffer", None)
    if binary is not None:
        binary.write(data)
        binary.flush()
    else:
        stdout.write(data.decode())
        stdout.flush()


pass_app = click.make_pass_decorator(AppContext)


class Seconds(click.FloatRange):
    """A number of seconds: finite (``nan`` and ``inf`` are refused) and within bounds."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse the value; a non-finite number is a usage error naming the option."""
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return number


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

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(_LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _LAZY_COMMANDS:
            _load(self, _LAZY_COMMANDS[cmd_name][0])
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help`` without importing the command modules."""
        rows: list[tuple[str, str | None]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None:
                rows.append((name, _LAZY_COMMANDS[name][1]))
            elif not command.hidden:
                rows.append((name, None))
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        lines = [
            (
                name,
                self.commands[name].get_short_help_str(limit)
                if text is None
                else _shorten(text, limit),
            )
            for name, text in rows
        ]
        with formatter.section("Commands"):
            formatter.write_dl(lines)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except WkingError as exc:
            _print_error(ctx, exc.cli_message())
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
            if _interrupted(exc):
                click.echo("interrupted", err=True)
                raise click.exceptions.Exit(130) from None
            _print_error(
                ctx,
                f"unexpected {type(exc).__name__}: {exc} "
                "(a bug in wking: run with -v for the traceback and please report it)",
            )
            raise click.exceptions.Exit(1) from exc


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by Ctrl-C.

    Python 3.11 wraps a ``KeyboardInterrupt`` raised in a class body's ``__set_name__`` (an
    import in progress) in a ``RuntimeError``.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _print_error(ctx: click.Context, message: str) -> None:
    """Print the traceback of the exception being handled (with ``-v``), then one line."""
    # stderr ends up in the journal under systemd: no MAC address there either (DESIGN §9);
    # the user knows which address they typed.
    app = ctx.find_object(AppContext)
    if app is not None and app.verbose:
        sys.stderr.write(for_stderr(traceback.format_exc(), multiline=True))
    click.echo(f"error: {for_stderr(message)}", err=True)


_EPILOG = (
    "Every command has --help. In the source tree: docs/cli.md (every command, exit code and "
    "JSON shape) and examples/ (scripts using the library)."
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar="WKING_HOME",
    metavar="DIR",
    help="Keep everything of this installation under DIR (env WKING_HOME; default: the "
    "platform's user directories).",
)
@click.option(
    "--simulate",
    "simulate",
    type=click.IntRange(0, 1000),
    default=None,
    metavar="N",
    help="Run against N simulated speakers instead of a Bluetooth adapter (env "
    "WKING_SIMULATE). Their volume, EQ and light are kept per home (sim-state.json in the data "
    "directory).",
)
@click.option("--json", "json_output", is_flag=True, help="Print machine-readable JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and tracebacks on errors.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="WKING_LOG_FORMAT",
    help="Log lines on standard error: text, or one JSON object a line (time, level, logger, "
    "message, extras) for journald and log shippers (env WKING_LOG_FORMAT). Redacted either way.",
)
@click.version_option(package_name="wking-device", prog_name="wking")
@click.pass_context
def cli(
    ctx: click.Context,
    *,
    home: str | None,
    simulate: int | None,
    json_output: bool,
    verbose: bool,
    log_format: str,
) -> None:
    """Discover, control and (with your consent) collect logs from W-KING speakers."""
    if ctx.invoked_subcommand != "agent":  # `agent run` handles its own signals
        default_behaviour()
    # --simulate unset: WKING_SIMULATE is read through the settings when a command needs it
    if home is not None and not home.strip():
        # Path("") is the current directory: an empty --home is a mistake, not a choice
        raise click.BadParameter("the home directory is empty", param_hint="'--home'")
    app = AppContext(
        home=Path(home) if home is not None else None,
        json=json_output,
        verbose=verbose,
        log_format=log_format,
        _simulate=simulate,
    )
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter = (
        _JsonFormatter()
        if log_format == "json"
        else _TerminalFormatter("%(levelname)s %(name)s: %(message)s")
    )
    handler.setFormatter(formatter)
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.captureWarnings(capture=True)  # warnings too: redacted and escaped like every log line
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


class _TerminalFormatter(logging.Formatter):
    """Log lines for standard error: the message on one line, nothing a terminal acts on.

    Redaction has already happened (the record factory and filter of :mod:`._redact`); this
    escapes control characters and line breaks of the message (a speaker's name in a log line
    cannot forge a line or an escape sequence), keeping the line breaks of a traceback.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return visible(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record), multiline=True)


_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class _JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time``, ``level``, ``logger``, ``message``, then the extras.

    Redacted like every log line (the record is redacted again here, which is idempotent: extras
    of any type lose their MAC addresses) and inert on a terminal: every control, bidirectional
    and line-breaking character is a JSON escape (:func:`~wking_device.cli._term.json_line`).
    A traceback is the ``exception`` string.
    """

    def format(self, record: logging.LogRecord) -> str:
        redact_record(record)
        entry: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRS and not name.startswith("_") and name not in entry:
                entry[name] = redact_macs(value if _plain(value) else str(value))
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json_line(entry)


def _plain(value: object) -> bool:
    """Whether a value is JSON as it is (else it is logged as its ``str``)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _iso(created: float) -> str:
    """A record's time, UTC, ISO 8601 with milliseconds."""
    import datetime as dt  # noqa: PLC0415

    moment = dt.datetime.fromtimestamp(created, tz=dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_flag(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    del param
    app = ctx.find_object(AppContext)
    if value and app is not None:
        app.json = True


def _accept_json_after(group: click.Group) -> None:
    """Give every command of the tree a ``--json`` of its own (``wking scan --json``).

    The same switch as the global ``--json``; commands that declare one keep theirs.
    """
    for command in group.commands.values():
        if isinstance(command, click.Group):
            _accept_json_after(command)
        elif not any("--json" in param.opts for param in command.params):
            command.params.append(
                click.Option(
                    ["--json", "json_after"],
                    is_flag=True,
                    expose_value=False,
                    callback=_json_flag,
                    help="Print machine-readable JSON.",
                )
            )


_LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "agent": ("_agent", "The collection agent."),
    "completion": ("_config", "Print the shell completion script for bash, zsh or fish."),
    "config": ("_config", "The settings file (config.toml) of this installation."),
    "consent": ("_consent", "See, grant and withdraw consent for each data category."),
    "control": ("_ble", "Control the speaker at ADDRESS: volume, eq, light, power-off."),
    "demo": ("_demo", "The whole job on simulated speakers, each stage checked."),
    "data": ("_data", "See, export and delete the data collected on this machine."),
    "devices": ("_ble", "Bind, list and unbind the speakers the agent looks after."),
    "doctor": ("_ble", "Check Python, Bluetooth, paths, config and key store."),
    "info": ("_ble", "Show what the speaker at ADDRESS tells about itself."),
    "policy": ("_consent", "Read the privacy notice, its versions and their changes."),
    "receiver": ("_receiver", "Run a reference OTLP/HTTP receiver over TLS (tests, demos)."),
    "scan": ("_ble", "Discover W-KING speakers nearby."),
    "upload": ("_upload", "Send what consent allows to the collector now, over TLS."),
}
"""Top-level command -> (the ``wking_device.cli`` module that registers it, its short help).

A command's module is imported only when the command is invoked (or its help shown): ``wking
--help`` lists these without importing bleak, pydantic or aiohttp. tests/cli/test_cli_lazy.py
checks this table against the commands the modules really register.
"""


def _shorten(text: str, limit: int) -> str:
    """Cut a summary to ``limit`` characters at a word, as click does (``...``)."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 3, 0)].rsplit(" ", 1)[0].rstrip(" ,.:;") + "..."


def _load(group: click.Group, module_name: str) -> None:
    from wking_device.cli import _examples  # noqa: PLC0415 - with the commands it describes

    module = importlib.import_module(f"wking_device.cli.{module_name}")
    module.register(group)
    _accept_json_after(group)
    _examples.add_examples(group)


def load_all_commands() -> None:
    """Import every command module (for tools that walk the whole command tree)."""
    for module_name in sorted({module for module, _ in _LAZY_COMMANDS.values()}):
        _load(cli, module_name)
