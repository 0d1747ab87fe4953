"""End to end: the agent on simulated speakers collects exactly what consent allows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from wking_device.cli import cli

CATEGORIES = {
    "operation_logs",
    "device_info",
    "software_info",
    "mac_addresses",
    "location",
    "diagnostics",
    "ip_address",
    "cross_border_transfer",
}


@pytest.fixture(name="runner")
def fixture_runner() -> CliRunner:
    return CliRunner()


def _invoke(runner: CliRunner, *args: str, env: dict[str, str] | None = None) -> object:
    result = runner.invoke(cli, ["--json", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _records(runner: CliRunner) -> dict[str, object]:
    status = _invoke(runner, "data", "status")
    assert isinstance(status, dict)
    records = status["records"]
    assert isinstance(records, dict)
    return records


def _agent(runner: CliRunner, env: dict[str, str] | None = None) -> dict[str, object]:
    summary = _invoke(
        runner, "--simulate", "3", "agent", "run", "--cycles", "1", "--interval", "1", env=env
    )
    assert isinstance(summary, dict)
    return summary


def test_consent_gates_what_the_agent_stores(runner: CliRunner, home: Path) -> None:
    # Fresh home: every category denied.
    status = _invoke(runner, "consent", "status")
    assert isinstance(status, dict)
    states = {c["category"]: c["state"] for c in status["categories"]}
    assert states == dict.fromkeys(CATEGORIES, "denied")

    # No consent: the agent refuses to start (exit 3) and stores nothing.
    refused = runner.invoke(cli, ["--simulate", "3", "agent", "run", "--duration", "1"])
    assert refused.exit_code == 3
    assert "wking consent grant" in refused.stderr
    assert _records(runner)["total"] == 0

    # Granted operation_logs and device_info: only those are stored.
    _invoke(runner, "consent", "grant", "operation_logs", "device_info", "--yes")
    _agent(runner)
    records = _records(runner)
    by_category = records["by_category"]
    assert isinstance(by_category, dict)
    assert set(by_category) == {"operation_logs", "device_info"}
    assert by_category["device_info"] >= 3
    before = records["total"]

    # Do Not Track: nothing more, whatever was granted, and no speaker is even read.
    summary = _agent(runner, env={"DO_NOT_TRACK": "1"})
    assert summary["reads_ok"] == 0
    assert _records(runner)["total"] == before

    # Without MAC consent no speaker address reached the disk in any common form.
    needles = [b"C0:57:4B", b"c0:57:4b", b"C0574B", b"c0574b", bytes.fromhex("C0574B")[::-1]]
    for path in home.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for needle in needles:
                assert needle not in blob, (path, needle)


def test_withdrawal_shreds_pending_records(runner: CliRunner) -> None:
    _invoke(runner, "consent", "grant", "operation_logs", "device_info", "--yes")
    _agent(runner)
    by_category = _records(runner)["by_category"]
    assert isinstance(by_category, dict)
    assert by_category.get("operation_logs", 0) > 0
    _invoke(runner, "consent", "withdraw", "operation_logs", "--yes")
    # At once: no agent holds the store, so the command itself crypto-shreds the category.
    by_category = _records(runner)["by_category"]
    assert isinstance(by_category, dict)
    assert "operation_logs" not in by_category
    assert by_category.get("device_info", 0) > 0
    # And the next run collects no operation logs.
    _agent(runner)
    by_category = _records(runner)["by_category"]
    assert isinstance(by_category, dict)
    assert "operation_logs" not in by_category
