"""Withdrawal is effective at once, with or without a running agent (issue 7, item 4).

Real subprocesses throughout: the ``wking`` CLI withdrawing, a library program holding the store
(and a gate it never refreshes by hand), and a process killed between the ledger write and the
shred.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from wking_device.cli import cli
from wking_device.collect import OperationLogCollector, open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.errors import PermitRevoked
from wking_device.models import OperationEvent, OperationKind, Outcome
from wking_device.store import open_store

_DEADLINE = 20.0


def _wking(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from wking_device.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


async def _store_records(count: int) -> None:
    paths = resolve_paths()
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    async with open_store(paths, settings) as store:
        collector = OperationLogCollector(gate, store, adapter_mac="")
        for _ in range(count):
            collector.on_event(OperationEvent(kind=OperationKind.SCAN, outcome=Outcome.OK))
        assert await collector.flush() == count


def _kept(category: str) -> int:
    result = _wking("--json", "data", "status")
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["records"]["by_category"].get(category, 0))


def _wait_for(condition, what: str, timeout: float = _DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(name="granted")
def fixture_granted() -> None:
    # set-up, not what is tested: granted in-process (a subprocess costs a Python start-up)
    result = CliRunner().invoke(cli, ["consent", "grant", "--yes", "operation_logs"])
    assert result.exit_code == 0, result.output
    asyncio.run(_store_records(7))
    assert _kept("operation_logs") == 7


_WITHDRAW_THEN_HANG = textwrap.dedent(
    """
    import sys, time
    from wking_device.collect import open_installation_gate
    from wking_device.config import load_settings, resolve_paths

    paths = resolve_paths()
    gate = open_installation_gate(paths, load_settings(paths))
    gate.withdraw(["operation_logs"])  # the ledger write...
    print("withdrawn", flush=True)
    time.sleep(600)  # ... and killed before any shred
    """
)


def _withdraw_and_get_killed() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _WITHDRAW_THEN_HANG], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "withdrawn"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=_DEADLINE)


@pytest.mark.usefixtures("granted")
def test_a_process_killed_between_ledger_write_and_shred_is_finished_by_the_next_open() -> None:
    _withdraw_and_get_killed()
    # read-only commands do not shred; the records are still there
    assert _kept("operation_logs") == 7
    # the next process that opens the store for writing finishes the withdrawal
    asyncio.run(_open_and_close())
    assert _kept("operation_logs") == 0
    status = json.loads(_wking("--json", "data", "status").stdout)
    assert status["shredded"] == 7


async def _open_and_close() -> None:
    paths = resolve_paths()
    async with open_store(paths, load_settings(paths)):
        pass


@pytest.mark.usefixtures("granted")
def test_withdrawing_again_finishes_a_shred_that_did_not_happen() -> None:
    _withdraw_and_get_killed()
    result = _wking("--json", "consent", "withdraw", "--yes", "operation_logs")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["withdrawn"] == []  # already withdrawn in the ledger
    assert answer["purged"] == 7  # but its records are destroyed now
    assert _kept("operation_logs") == 0
    # and once more: nothing left, nothing pending, still a clean answer
    again = json.loads(_wking("--json", "consent", "withdraw", "--yes", "operation_logs").stdout)
    assert again["purged"] == 0


@pytest.mark.usefixtures("granted")
def test_withdraw_without_a_holder_shreds_in_the_withdrawing_process() -> None:
    result = _wking("--json", "consent", "withdraw", "--yes", "operation_logs")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["purged"] == 7
    assert answer["pending"] is False
    assert _kept("operation_logs") == 0


_HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from wking_device.collect import open_installation_gate
    from wking_device.config import load_settings, resolve_paths
    from wking_device.store import open_store

    async def main() -> None:
        paths = resolve_paths()
        settings = load_settings(paths)
        gate = open_installation_gate(paths, settings)  # never refreshed by this program
        async with open_store(paths, settings) as store:
            store.attach(gate)
            print("holding", flush=True)
            # an idle library program: waits for its standard input to close
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())
    """
)


@pytest.mark.usefixtures("granted")
def test_a_library_program_holding_the_store_shreds_promptly_without_refresh() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        _withdraw_while_held(holder)


def _withdraw_while_held(holder: subprocess.Popen[str]) -> None:
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        result = _wking("--json", "consent", "withdraw", "--yes", "operation_logs")
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["withdrawn"] == ["operation_logs"]
        # the holder did it, and the CLI says what was actually done
        assert answer["purged"] == 7, answer
        assert answer["pending"] is False
        _wait_for(lambda: _kept("operation_logs") == 0, "the holder to shred")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait(timeout=_DEADLINE) == 0


def test_a_library_gate_notices_a_cli_withdrawal_without_refresh() -> None:
    assert _wking("consent", "grant", "--yes", "operation_logs").returncode == 0
    paths = resolve_paths()
    gate = open_installation_gate(paths, load_settings(paths))
    permit = gate.permit(["operation_logs"])
    permit.require("operation_logs")
    assert _wking("consent", "withdraw", "--yes", "operation_logs").returncode == 0

    def revoked() -> bool:
        try:
            permit.require("operation_logs")
        except PermitRevoked:
            return True
        return False

    _wait_for(revoked, "the permit to be revoked")
    assert gate.allows("operation_logs") is False
    assert gate.try_permit(["operation_logs"]) is None
