"""The ``Examples:`` section at the end of every command's ``--help``.

This module owns the examples table and attaches it to the command tree as each command's
epilog. It does not run anything: tests/cli/test_cli_examples.py checks that every leaf command
has an example and that each example names an existing command and options.
"""

from __future__ import annotations

import click

__all__ = ["EXAMPLES", "add_examples"]

_MAC = "C0:57:4B:00:00:01"

EXAMPLES: dict[tuple[str, ...], tuple[str, ...]] = {
    ("agent", "run"): (
        "wking agent run",
        "wking --simulate 3 agent run --duration 30 --interval 2",
        "wking --simulate 3 agent run --cycles 1",
        "wking agent run --endpoint https://collector.example.org/v1/logs --ca-file ca.pem",
    ),
    ("agent", "status"): ("wking agent status", "wking agent status --json"),
    ("completion",): (
        'eval "$(wking completion bash)"    # in ~/.bashrc',
        'eval "$(wking completion zsh)"     # in ~/.zshrc',
        "wking completion fish > ~/.config/fish/completions/wking.fish",
    ),
    ("demo",): (
        "wking demo",
        "wking demo --devices 5 --duration 20 --faults",
        "wking demo --json",
    ),
    ("config", "init"): ("wking config init", "wking config init --force"),
    ("config", "set"): (
        "wking config set upload.endpoint https://collector.example.org/v1/logs",
        "wking config set ble.scan_timeout 8",
        "wking config set upload.token_file /etc/wking/collector.token",
    ),
    ("config", "show"): ("wking config show", "wking config show --json"),
    ("config", "unset"): (
        "wking config unset upload.endpoint",
        "wking config unset ble.adapter --json",
    ),
    ("consent", "grant"): (
        "wking consent grant operation_logs device_info",
        "wking consent grant --yes operation_logs",
    ),
    ("consent", "history"): ("wking consent history", "wking consent history --json"),
    ("consent", "receipts"): ("wking consent receipts --out receipts.json",),
    ("consent", "reset"): ("wking consent reset",),
    ("consent", "status"): ("wking consent status", "wking consent status --json"),
    ("consent", "withdraw"): (
        "wking consent withdraw location",
        "wking consent withdraw --all --yes",
    ),
    ("control", "eq"): (f"wking control {_MAC} eq bass-boost",),
    ("control", "light"): (f"wking control {_MAC} light rainbow",),
    ("control", "power-off"): (f"wking control {_MAC} power-off",),
    ("control", "volume"): (f"wking control {_MAC} volume 40",),
    ("data", "delete"): ("wking data delete location", "wking data delete --all --yes"),
    ("data", "export"): (
        "wking data export --out my-data.json",
        "wking data export operation_logs --out -",
    ),
    ("data", "status"): ("wking data status", "wking data status --json"),
    ("devices", "bind"): (f"wking devices bind {_MAC} --alias kitchen",),
    ("devices", "list"): ("wking devices list", "wking devices list --json"),
    ("devices", "unbind"): (f"wking devices unbind {_MAC}",),
    ("doctor",): ("wking doctor", "wking doctor --json"),
    ("info",): (f"wking info {_MAC}", f"wking --simulate 2 --json info {_MAC}"),
    ("policy", "diff"): ("wking policy diff 1.0 1.1",),
    ("policy", "show"): ("wking policy show", "wking policy show --version 1.0"),
    ("policy", "versions"): ("wking policy versions",),
    ("receiver", "export"): ("wking receiver export --data ./receiver-data",),
    ("receiver", "run"): ("wking receiver run --data ./receiver-data --port 4318",),
    ("scan",): (
        "wking scan",
        "wking scan --timeout 10",
        "wking --simulate 3 --json scan",
        "wking scan --watch",
        "wking --json scan --watch --duration 600",
    ),
    ("upload",): (
        "wking upload",
        "wking upload --endpoint https://collector.example.org/v1/logs --pin sha256//BASE64=",
    ),
}
"""Command path -> example command lines (without the ``$ `` prompt)."""


def _epilog(lines: tuple[str, ...]) -> str:
    # \b keeps click from re-wrapping the block (one example a line)
    return "Examples:\n\n\b\n" + "\n".join(f"  $ {line}" for line in lines)


def add_examples(group: click.Group, path: tuple[str, ...] = ()) -> None:
    """Set the epilog of every command of the tree that has examples in :data:`EXAMPLES`."""
    for name, command in group.commands.items():
        here = (*path, name)
        if isinstance(command, click.Group):
            add_examples(command, here)
        elif here in EXAMPLES:
            command.epilog = _epilog(EXAMPLES[here])
