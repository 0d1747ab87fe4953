"""docs/cli.md describes the real command: every command, every option, the real JSON keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wking_device.cli import cli

DOC = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # a lazy group: commands load when asked for
        command = group.get_command(ctx, name)
        assert command is not None, name
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


README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
EXAMPLES = Path(__file__).parents[2] / "examples"


# The README's commands run in order on a fresh home in tests/test_doc_snippets.py (with every
# other documented command); here, what the agent did with them.


def test_readme_agent_reads_what_was_bound_and_withdrawal_shreds() -> None:
    runner = CliRunner()

    def run(*args: str) -> dict[str, object]:
        result = runner.invoke(cli, ["--json", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        loaded: dict[str, object] = json.loads(result.stdout)
        return loaded

    run("--simulate", "3", "devices", "bind", "C0:57:4B:00:00:02")
    run("consent", "grant", "--yes", "operation_logs", "device_info")
    summary = run("--simulate", "3", "agent", "run", "--cycles", "1")
    assert summary["cycles"] == 1
    # "read the bound speakers": three advertise, one is bound, so one read per cycle
    assert summary["speakers_seen"] == 3
    assert summary["reads_ok"] == summary["cycles"]
    kept = run("data", "status")["records"]
    assert isinstance(kept, dict)
    assert kept["by_category"]["operation_logs"] > 0
    run("consent", "withdraw", "--yes", "operation_logs")
    kept = run("data", "status")["records"]
    assert isinstance(kept, dict)
    assert "operation_logs" not in kept["by_category"]


@pytest.mark.parametrize("script", sorted(p.name for p in EXAMPLES.glob("[!_]*.py")))
def test_examples_take_real_without_the_sim_extra(script: str) -> None:
    # README: every example that talks to speakers takes --real; a Raspberry Pi with an adapter
    # has no bumble, and every example (those without speakers too) runs there.
    code = (
        "import runpy, sys\n"
        "sys.modules['bumble'] = None\n"  # as if the sim extra were not installed
        f"sys.argv = [{script!r}, '--help']\n"
        f"runpy.run_path({script!r}, run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=EXAMPLES,
    )
    assert proc.returncode == 0, proc.stderr
    if "SimWorld" in (EXAMPLES / script).read_text(encoding="utf-8"):
        assert "--real" in proc.stdout  # it talks to speakers: simulated, or real with --real


def test_docs_say_whether_anything_is_uploaded() -> None:
    # Until an uploader (and `wking upload`) exists, a reader must not believe data leaves the
    # machine; once it exists, the sentence has to go.
    uploads = "upload" in cli.list_commands(click.Context(cli))
    for name, text in (("README.md", README), ("docs/cli.md", DOC)):
        says_nothing = "this version uploads nothing" in text.lower()
        assert says_nothing != uploads, name
