"""Every leaf command's ``--help`` ends with examples, and every example is a real command line.

Each example is parsed by the real command tree (with ``--help`` appended, so nothing runs): an
unknown command or option in an example fails here.
"""

from __future__ import annotations

import re
import shlex

import click
import pytest
from click.testing import CliRunner

from wking_device.cli import cli
from wking_device.cli._app import load_all_commands
from wking_device.cli._examples import EXAMPLES

load_all_commands()  # the group loads its commands lazily: this test walks the whole tree


def _leaves(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found.extend(_leaves(command, path))
        else:
            found.append(path)
    return found


LEAVES = _leaves(cli)


def test_every_leaf_has_examples_and_no_example_is_orphaned() -> None:
    missing = sorted(set(LEAVES) - set(EXAMPLES))
    assert not missing, f"add examples for {missing} to src/wking_device/cli/_examples.py"
    assert set(EXAMPLES) <= set(LEAVES)


@pytest.mark.parametrize("path", LEAVES, ids=[" ".join(p) for p in LEAVES])
def test_help_ends_with_an_example_line(path: tuple[str, ...]) -> None:
    words = list(path)
    if words[0] == "control":
        words.insert(1, "C0:57:4B:00:00:01")
    result = CliRunner().invoke(cli, [*words, "--help"])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "Examples:" in lines
    assert any(line.startswith("$ wking ") for line in lines), result.stdout


def _command_line(example: str) -> list[str]:
    """The wking words of an example: the command of `eval "$(...)"`, before `|`, `>` or `#`."""
    inner = re.search(r"\$\((wking [^)]*)\)", example)
    text = inner.group(1) if inner else example
    text = re.split(r"\s[|>#]", text, maxsplit=1)[0]
    words = shlex.split(text)
    assert words[0] == "wking", example
    return words[1:]


EXAMPLE_LINES = [(path, line) for path, lines in sorted(EXAMPLES.items()) for line in lines]


@pytest.mark.parametrize(("path", "example"), EXAMPLE_LINES, ids=[e for _, e in EXAMPLE_LINES])
def test_every_example_names_a_real_command_and_real_options(
    path: tuple[str, ...], example: str
) -> None:
    words = _command_line(example)
    words_only = [w for w in words if not w.startswith("-") and not re.fullmatch(r"[0-9]+", w)]
    for word in path:
        assert word in words_only, f"{example!r} is not an example of {' '.join(path)}"
    result = CliRunner().invoke(cli, [*words, "--help"], prog_name="wking")
    assert result.exit_code == 0, f"{example}: {result.output}"
    usage = result.stdout.splitlines()[0]
    assert usage.startswith(f"Usage: wking {path[0]}"), usage  # the leaf's help, not a group's
    assert f" {path[-1]} " in usage + " ", usage
