"""``wking config init|show|set|unset`` and ``wking completion bash|zsh|fish``.

This module renders the config file's commands (the work is :mod:`wking_device._configfile`) and
prints click's own shell-completion scripts. It reads and writes no other file: ``config show``
only reports (it creates nothing), ``config init``, ``set`` and ``unset`` write ``config.toml`` and
nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from wking_device._url_mask import mask_url
from wking_device.cli._app import AppContext, pass_app
from wking_device.cli._term import cell, markup

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["register"]


@click.group("config")
def config_group() -> None:
    """The settings file (config.toml) of this installation."""


@config_group.command("init", short_help="Write a commented config.toml with every setting.")
@click.option("--force", is_flag=True, help="Replace an existing config.toml.")
@pass_app
def config_init(app: AppContext, force: bool) -> None:
    """Write a commented config.toml: every setting, commented out at its default.

    An existing file is kept unless --force is given. The file is readable by you only.
    """
    from wking_device._configfile import write_template  # noqa: PLC0415 - tomlkit on this path

    path = write_template(app.paths, force=force)
    app.out({"path": str(path), "written": True}, lambda c: c.print(f"wrote {markup(path)}"))


@config_group.command("show", short_help="Print every effective setting and where it comes from.")
@pass_app
def config_show(app: AppContext) -> None:
    """Print every effective setting and its source: env (a WKING_* variable), file or default.

    Nothing is created; a malformed file or variable is an error naming it (exit 2).
    """
    from wking_device._configfile import effective_settings  # noqa: PLC0415

    paths = app.paths
    entries = effective_settings(paths, app.settings)
    data = {
        "file": str(paths.config_file),
        "file_exists": paths.config_file.exists(),
        "settings": {
            e.key: {"value": _displayed(e.key, e.value), "source": e.source, "variable": e.variable}
            for e in entries
        },
    }

    def render(console: Console) -> None:
        exists = "" if data["file_exists"] else " (absent: defaults and environment only)"
        console.print(f"file: {markup(paths.config_file)}{exists}")
        table = Table(show_header=True)
        for column in ("setting", "value", "source"):
            table.add_column(column)
        for e in entries:
            source = f"env ({e.variable})" if e.variable else e.source
            table.add_row(cell(e.key), cell(_shown(_displayed(e.key, e.value))), cell(source))
        console.print(table)

    app.out(data, render)


def _displayed(key: str, value: Any) -> Any:
    """A setting's value as shown: the collector's URL with its query values masked."""
    if key == "upload.endpoint" and isinstance(value, str):
        return mask_url(value)  # its query may hold a secret (?api_key=...)
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@config_group.command("set", short_help="Change one setting after validating the whole file.")
@click.argument("key")
@click.argument("value")
@pass_app
def config_set(app: AppContext, key: str, value: str) -> None:
    """Set KEY (dotted, e.g. upload.endpoint) to VALUE in config.toml.

    VALUE is taken as text for text and path settings, else as a TOML value (7, 2.5, true,
    '["a", "b"]'). The whole file is validated before it is saved, its comments kept, and it is
    replaced at once, readable by you only. A secret (a token) is never accepted: set
    upload.token_file to a private file holding it.
    """
    from wking_device._configfile import set_value  # noqa: PLC0415

    written = _displayed(key, set_value(app.paths, key, value))
    path = app.paths.config_file
    app.out(
        {"path": str(path), "key": key, "value": written},
        lambda c: c.print(f"{markup(key)} = {markup(_shown(written))} in {markup(path)}"),
    )


@config_group.command("unset", short_help="Take one setting out of config.toml (default again).")
@click.argument("key")
@pass_app
def config_unset(app: AppContext, key: str) -> None:
    """Take KEY (dotted, e.g. upload.endpoint) out of config.toml.

    Its default applies again, unless a WKING_* environment variable sets it. The rest of the
    file (comments included) is kept; the file is validated before it is replaced. A key that
    is not in the file changes nothing.
    """
    from wking_device._configfile import unset_value  # noqa: PLC0415

    path = app.paths.config_file
    removed = unset_value(app.paths, key)
    app.out(
        {"path": str(path), "key": key, "removed": removed},
        lambda c: c.print(
            f"{markup(key)} taken out of {markup(path)}: its default applies"
            if removed
            else f"{markup(key)} is not set in {markup(path)}: nothing changed"
        ),
    )


_SHELLS = ("bash", "zsh", "fish")


@click.command("completion", short_help="Print the shell completion script for bash, zsh or fish.")
@click.argument("shell", type=click.Choice(_SHELLS))
@pass_app
def completion(app: AppContext, shell: str) -> None:
    """Print click's completion script for SHELL; load it from your shell's startup file.

    bash and zsh evaluate it at start-up; fish reads it from its completions directory (see the
    examples).
    """
    from click.shell_completion import get_completion_class  # noqa: PLC0415

    from wking_device.cli._app import cli  # noqa: PLC0415 - the root group, complete by now

    completer = get_completion_class(shell)
    assert completer is not None  # every choice is one of click's shells
    script = completer(cli, {}, "wking", "_WKING_COMPLETE").source()

    def render(console: Console) -> None:
        del console  # the script verbatim: rich would read its brackets as markup
        click.echo(script)

    # nothing on stderr: `eval "$(wking completion bash)"` runs at every shell start
    app.out({"shell": shell, "script": script}, render)


def register(group: click.Group) -> None:
    """Add ``config`` and ``completion`` to the root group."""
    group.add_command(config_group)
    group.add_command(completion)
