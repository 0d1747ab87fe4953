from __future__ import annotations

import asyncio
import json
import os
import pty
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from wking_device.cli import cli
from wking_device.collect import OperationLogCollector, open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import OperationEvent, OperationKind, Outcome
from wking_device.policy import CATEGORY_IDS, shipped_policies
from wking_device.store import open_store

CURRENT = shipped_policies().current.version


@pytest.fixture(name="run")
def fixture_run():
    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None):
        return runner.invoke(cli, list(args), input=input, env=env, catch_exceptions=False)

    return run


def _status(run, env: dict[str, str] | None = None) -> dict:
    result = run("consent", "status", "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _states(report: dict) -> dict[str, str]:
    return {c["category"]: c["state"] for c in report["categories"]}


def _ledger(home: Path) -> Path:
    return home / "data" / "consent" / "ledger.jsonl"


def test_fresh_home_status_shows_all_eight_denied(run) -> None:
    report = _status(run)
    assert _states(report) == dict.fromkeys(CATEGORY_IDS, "denied")
    assert len(report["categories"]) == 8
    assert report["do_not_track"] is False
    assert report["ledger"]["verified"] is True
    # the global --json works too, and the human form renders
    assert json.loads(run("--json", "consent", "status").stdout)["policy_version"]
    assert "operation_logs" in run("consent", "status").stdout


def test_yes_needs_named_categories_and_known_ones(run) -> None:
    result = run("consent", "grant", "--yes")
    assert result.exit_code == 2
    assert "--yes needs the categories named" in result.stderr
    result = run("consent", "grant", "--yes", "browsing_history")
    assert result.exit_code == 2
    assert "unknown data category" in result.stderr


def test_prerequisite_is_enforced_with_a_clear_message(run) -> None:
    result = run("consent", "grant", "--yes", "mac_addresses")
    assert result.exit_code == 3
    assert "mac_addresses requires operation_logs" in result.stderr
    assert _states(_status(run))["mac_addresses"] == "denied"
    result = run("consent", "grant", "--yes", "operation_logs,mac_addresses")
    assert result.exit_code == 0, result.output
    assert _states(_status(run))["mac_addresses"] == "granted"


def _on_a_terminal(home: Path, *args: str, answers: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``wking`` with a real pseudo-terminal as standard input.

    stdout and stderr stay pipes, so a test sees what goes where; the answers are typed into the
    terminal before the questions come (the line discipline keeps them until they are read).
    """
    main_fd, terminal_fd = pty.openpty()
    try:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("wking")), "--home", str(home), *args],
            stdin=terminal_fd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.write(main_fd, answers.encode())
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        os.close(terminal_fd)
        os.close(main_fd)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_interactive_grant_shows_description_and_policy_version(run, home: Path) -> None:
    result = _on_a_terminal(home, "consent", "grant", "device_info", "location", answers="y\nn\n")
    assert result.returncode == 0, result.stderr
    # the questions and what they are about go to stderr; stdout carries the result
    assert "speaker's model, firmware" in result.stderr
    assert f"Privacy notice: version {CURRENT}" in result.stderr
    assert "granted: device_info" in result.stdout
    states = _states(_status(run))
    assert states["device_info"] == "granted"
    assert states["location"] == "denied"
    history = json.loads(run("consent", "history", "--json").stdout)
    assert [(h["event"], h["categories"], h["method"]) for h in history] == [
        ("grant", ["device_info"], "cli-prompt")
    ]


def test_interactive_grant_with_json_keeps_stdout_valid_json(home: Path) -> None:
    result = _on_a_terminal(home, "--json", "consent", "grant", "device_info", answers="y\n")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["granted"] == ["device_info"]
    assert "Grant consent for device_info?" in result.stderr


def test_interactive_grant_can_decline_everything(run, home: Path) -> None:
    result = _on_a_terminal(home, "consent", "grant", answers="n\n" * len(CATEGORY_IDS))
    assert result.returncode == 0, result.stderr
    assert "nothing granted" in result.stdout
    assert set(_states(_status(run)).values()) == {"denied"}


def test_piped_answers_grant_nothing(run) -> None:
    # `yes | wking consent grant …` is not an affirmative act: only --yes grants without a terminal
    result = run("consent", "grant", "operation_logs", input="y\n" * 8)
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert set(_states(_status(run)).values()) == {"denied"}


def test_withdraw_is_one_confirmation_or_yes(run) -> None:
    run("consent", "grant", "--yes", "operation_logs", "mac_addresses", "device_info")
    declined = run("consent", "withdraw", "operation_logs", input="n\n")
    assert declined.exit_code != 0
    assert _states(_status(run))["operation_logs"] == "granted"
    result = run("consent", "withdraw", "operation_logs", input="y\n")
    assert result.exit_code == 0, result.output
    assert "mac_addresses" in result.stdout  # the dependent goes with it
    states = _states(_status(run))
    assert states["operation_logs"] == states["mac_addresses"] == "denied"
    assert run("consent", "withdraw", "--yes", "--all").exit_code == 0
    assert set(_states(_status(run)).values()) == {"denied"}
    history = json.loads(run("consent", "history", "--json").stdout)
    assert [h["method"] for h in history] == ["cli-yes", "cli-prompt", "cli-yes"]


def test_do_not_track_denies_everything_and_is_recorded(run) -> None:
    run("consent", "grant", "--yes", "device_info")
    report = _status(run, env={"DO_NOT_TRACK": "1"})
    assert report["do_not_track"] is True
    assert set(_states(report).values()) == {"denied"}
    assert {c["reason"] for c in report["categories"]} == {"do_not_track", "not_granted"}
    # status only reports (issue 7, item 13): a command that writes records the change
    history = json.loads(run("consent", "history", "--json").stdout)
    assert [h["event"] for h in history] == ["grant"]
    run("consent", "grant", "--yes", "location", env={"DO_NOT_TRACK": "1"})
    history = json.loads(run("consent", "history", "--json").stdout)
    assert [h["event"] for h in history][1:] == ["dnt_on", "grant"]


def test_minor_needs_guardian(run) -> None:
    env = {"WKING_MINOR": "true"}
    result = run("consent", "grant", "--yes", "location", env=env)
    assert result.exit_code == 3
    assert "guardian" in result.stderr
    result = run("consent", "grant", "--yes", "--guardian", "location", env=env)
    assert result.exit_code == 0, result.output
    assert _states(_status(run, env=env))["location"] == "granted"


def test_receipts_export(run, tmp_path: Path) -> None:
    run("consent", "grant", "--yes", "operation_logs", "location")
    run("consent", "withdraw", "--yes", "location")
    out = tmp_path / "receipts.json"
    result = run("consent", "receipts", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    document = json.loads(out.read_text())
    (receipt,) = document["receipts"]
    assert receipt["version"] == "KI-CR-v1.1.0"
    assert receipt["jurisdiction"] == "EU"
    assert receipt["collectionMethod"]
    assert receipt["spiCat"] == ["location"]
    assert receipt["status"] == {"location": "withdrawn", "operation_logs": "active"}
    assert receipt["event_history"][0]["event"] == "withdraw"
    assert receipt["notice"]["policy_version"] == CURRENT
    assert document["ledger"]["entries"] == 2


def _tamper(home: Path) -> None:
    ledger = _ledger(home)
    ledger.write_bytes(ledger.read_bytes().replace(b"device_info", b"software_info"))


def test_tampered_ledger_exits_7_and_denies_everything(run, home: Path) -> None:
    run("consent", "grant", "--yes", "device_info", "operation_logs")
    _tamper(home)
    result = run("consent", "status", "--json")
    assert result.exit_code == 7
    report = json.loads(result.stdout)
    assert set(_states(report).values()) == {"denied"}
    assert report["ledger"]["verified"] is False
    assert "ledger" in result.stderr
    for args in (
        ("consent", "grant", "--yes", "device_info"),
        ("consent", "withdraw", "--yes", "device_info"),
        ("consent", "history"),
        ("consent", "receipts", "--out", "-"),
        ("--simulate", "2", "agent", "run", "--duration", "0.5"),
    ):
        assert run(*args).exit_code == 7, args
    assert run("consent", "reset").exit_code != 0  # needs confirmation
    result = run("consent", "reset", "--yes")
    assert result.exit_code == 0, result.output
    assert set(_states(_status(run)).values()) == {"denied"}
    assert run("consent", "reset", "--yes").exit_code == 2  # nothing to reset now


@pytest.mark.parametrize("how", ["delete_entry", "reorder", "truncate"])
def test_installed_wking_script_exits_7_on_tampering(run, home: Path, how: str) -> None:
    run("consent", "grant", "--yes", "device_info")
    run("consent", "grant", "--yes", "software_info")
    run("consent", "withdraw", "--yes", "device_info")
    ledger = _ledger(home)
    lines = ledger.read_bytes().splitlines(keepends=True)
    if how == "delete_entry":
        lines = [lines[0], lines[2]]
    elif how == "reorder":
        lines = [lines[1], lines[0], lines[2]]
    else:
        lines = lines[:2]
    ledger.write_bytes(b"".join(lines))
    script = Path(sys.executable).with_name("wking")
    env = {**os.environ, "WKING_HOME": str(home)}
    proc = subprocess.run(
        [str(script), "consent", "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 7, proc.stderr
    assert "consent ledger" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # said once
    assert set(_states(json.loads(proc.stdout)).values()) == {"denied"}


def test_policy_commands(run) -> None:
    shown = run("policy", "show", "--version", "1.0")
    assert shown.exit_code == 0
    assert "Version 1.0, 15 January 2026" in shown.stdout
    assert f"Version {CURRENT}," in run("policy", "show").stdout
    versions = json.loads(run("policy", "versions", "--json").stdout)
    assert [v["version"] for v in versions] == ["1.0", "1.1", "1.2"]
    assert versions[-1]["current"] is True
    diff = run("policy", "diff", "1.0", "1.1")
    assert diff.exit_code == 0
    assert "significant changes for: diagnostics" in diff.stdout
    assert "+Version 1.1" in diff.stdout
    assert run("policy", "diff", "1.0", "7.0").exit_code == 2
    assert run("policy", "show", "--version", "x").exit_code == 2


async def _store_records(count: int) -> None:
    paths = resolve_paths()
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    async with open_store(paths, settings) as store:
        collector = OperationLogCollector(gate, store, adapter_mac="")
        for _ in range(count):
            collector.on_event(OperationEvent(kind=OperationKind.SCAN, outcome=Outcome.OK))
        assert await collector.flush() == count


def test_withdraw_destroys_stored_records(run) -> None:
    run("consent", "grant", "--yes", "operation_logs")
    asyncio.run(_store_records(5))
    result = run("--json", "consent", "withdraw", "--yes", "operation_logs")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["purged"] == 5


def test_withdraw_prompt_names_only_dependents_that_were_granted(run) -> None:
    run("consent", "grant", "--yes", "operation_logs")
    result = run("consent", "withdraw", "operation_logs", input="n\n")
    assert "Withdraw consent for operation_logs?" in result.stderr
    assert "mac_addresses" not in result.stderr  # never granted: nothing to say about it
    run("consent", "grant", "--yes", "mac_addresses")
    result = run("consent", "withdraw", "operation_logs", input="n\n")
    assert "(and mac_addresses, which needs it)" in result.stderr
