"""The lazy ``wking`` group: ``--help`` imports no command module, the table matches them."""

from __future__ import annotations

import os
import subprocess
import sys

import click

from wking_device.cli import _app
from wking_device.cli._app import cli, load_all_commands

HEAVY = (
    "wking_device.cli._agent",
    "wking_device.cli._ble",
    "wking_device.cli._consent",
    "wking_device.cli._data",
    "wking_device.cli._receiver",
    "wking_device.cli._upload",
    "wking_device.config",
    "pydantic",
    "asyncio",
    "ssl",
    "email",
    "bleak",
    "aiohttp",
    "rich",
)


def test_help_imports_no_command_module() -> None:
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from wking_device.cli import cli\n"
        "result = CliRunner().invoke(cli, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(proc.stdout.split())
    assert "wking_device.cli._app" in loaded  # the probe really ran
    assert not {name for name in HEAVY if name in loaded}


def test_table_matches_what_the_modules_register() -> None:
    load_all_commands()
    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    assert names == sorted(cli.commands) == sorted(_app._LAZY_COMMANDS)
    for name in names:
        command = cli.get_command(ctx, name)
        assert command is not None
        module, short_help = _app._LAZY_COMMANDS[name]
        assert command.callback is not None
        assert command.callback.__module__ == f"wking_device.cli.{module}", name
        assert command.get_short_help_str(limit=1000) == short_help, name


def test_help_lists_every_command_with_its_summary() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wking_device", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for name, (_, short_help) in _app._LAZY_COMMANDS.items():
        assert f"  {name}" in proc.stdout
        assert short_help in proc.stdout, name


def test_consent_status_imports_no_bluetooth_validation_or_network_stack(tmp_path) -> None:
    # the command people run to check what they agreed to answers without pydantic (the
    # speakers' model), bleak, aiohttp or the email package (pydantic's plugin loader)
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from wking_device.cli import cli\n"
        "result = CliRunner().invoke(cli, ['consent', 'status'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'operation_logs' in result.output, result.output\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "WKING_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    loaded = set(proc.stdout.split())
    assert "wking_device.cli._consent" in loaded  # the probe really ran
    heavy = ("pydantic", "pydantic_core", "email", "bleak", "aiohttp", "wking_device.ble")
    assert not {name for name in heavy if name in loaded}
