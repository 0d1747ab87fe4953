"""docs/cli.md describes the real command: every command, every option, the real JSON keys."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wking_device.cli import cli

DOC = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        found.append((path, command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
    return found


COMMANDS = _commands(cli, "wking")


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[path for path, _ in COMMANDS])
def test_every_command_and_option_is_documented(path: str, command: click.Command) -> None:
    # `wking control ADDRESS volume`: group arguments sit between the words
    words = path.split()
    if words[1] == "control" and len(words) > 2:
        words.insert(2, "ADDRESS")
    assert " ".join(words) in DOC, f"{path} is not in docs/cli.md"
    for param in command.params:
        if isinstance(param, click.Option):
            assert any(opt in DOC for opt in param.opts), f"{path} {param.opts}"


def test_every_global_option_is_documented() -> None:
    for param in cli.params:
        for opt in param.opts:
            assert f"`{opt}" in DOC, opt


def test_documented_exit_codes_are_the_error_tree_codes() -> None:
    from wking_device import errors  # noqa: PLC0415

    for code in {
        cls.exit_code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.WkingError)
    }:
        assert f"\n| {code} |" in DOC, code


@pytest.mark.parametrize(
    "args",
    [
        ["--json", "doctor"],
        ["--json", "--simulate", "2", "scan", "--timeout", "1"],
        ["--json", "--simulate", "2", "info", "C0:57:4B:00:00:02"],
        ["--json", "data", "status"],
        ["--json", "consent", "status"],
    ],
)
def test_documented_json_keys_are_the_real_ones(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    item = data[0] if isinstance(data, list) else data
    for key in item:
        assert f'"{key}"' in DOC, f"{' '.join(args)}: key {key!r} is not in docs/cli.md"
