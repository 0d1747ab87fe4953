"""``wking agent run`` says what went wrong in one line each, without -v (review).

A ledger that could not be read was logged with its traceback: by the agent at its shutdown (its
last look for withdrawals), and by the store's writer at every look while idle (four times a
second, thirty lines each), where every other failure of a part is one ``WARNING`` line, the
traceback only with ``-v``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from wking_device.cli import cli
from wking_device.config import resolve_paths
from wking_device.consent import ledger_path

WKING = str(Path(sys.executable).with_name("wking"))


def _status(home: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((home / "data" / "agent-status.json").read_text()))
    except (OSError, ValueError):  # not written yet, or being replaced
        return {}


def _wait(proc: subprocess.Popen[bytes], condition: object, within: float = 60.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + within
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


def _run_then_break_the_ledger(home: Path, *options: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(
        cli, ["consent", "grant", "--yes", "device_info"], env={"WKING_HOME": str(home)}
    )
    assert done.exit_code == 0, done.output
    ledger = ledger_path(resolve_paths(home))
    proc = subprocess.Popen(
        [WKING, *options, "--json", "--simulate", "2", "agent", "run", "--interval", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "WKING_HOME": str(home)},
    )
    try:
        _wait(proc, lambda: _status(home).get("cycles", 0) >= 1)
        ledger.rename(ledger.with_name("moved-aside"))
        ledger.mkdir()  # reading the ledger now fails with an OS error
        _wait(proc, lambda: "cycle" in _status(home).get("failures", {}))
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, stdout.decode(), stderr.decode()


def test_an_unreadable_ledger_at_the_shutdown_is_one_line(tmp_path: Path) -> None:
    code, stdout, stderr = _run_then_break_the_ledger(tmp_path / "home")
    assert code == 0, stderr
    assert json.loads(stdout)["stopped_by"] == "SIGTERM"
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert lines, "the failures were not logged"
    assert all(line.startswith(("WARNING ", "ERROR ", "INFO ")) for line in lines), stderr
    assert any("consent failed (StorageError)" in line for line in lines), stderr
    # the store's writer looks at the ledger every 0.25 s while idle: said once, not each time
    assert len([line for line in lines if "pending withdrawals" in line]) <= 1, stderr


def test_with_verbose_the_traceback_is_there(tmp_path: Path) -> None:
    code, _stdout, stderr = _run_then_break_the_ledger(tmp_path / "home", "-v")
    assert code == 0, stderr
    assert "Traceback" in stderr
