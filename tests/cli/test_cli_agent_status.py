"""``wking agent run`` as a real process with a receiver, observed by ``wking agent status``.

The end-to-end test of issue 9: the agent runs on simulated speakers and uploads to the reference
receiver (in a thread of this process, TLS on 127.0.0.1); ``wking agent status`` reports it; a
category withdrawn from another process stops within a second; SIGTERM ends it with exit 0 within
10 s, and every record the collectors stored is either in the receiver or still in the store.
Plus: a stale status file (an agent killed with SIGKILL) says "not running (last seen …)", the
status command creates nothing, and a hostile status file reaches the terminal escaped.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from wking_device.agent import STATUS_FILE
from wking_device.config import load_settings, resolve_paths
from wking_device.receiver import Receiver
from wking_device.store import open_store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

WKING = Path(sys.executable).with_name("wking")


def _wking(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WKING), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _status() -> dict[str, Any]:
    proc = _wking("agent", "status", "--json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def _wait_for(condition: Callable[[], bool], limit: float, what: str) -> float:
    started = time.monotonic()
    while True:
        met = condition()
        elapsed = time.monotonic() - started
        if met:
            return elapsed
        if elapsed > limit:
            raise AssertionError(f"{what}: not within {limit} s")
        time.sleep(0.02)


def _status_file() -> dict[str, Any]:
    """The status file as the agent last wrote it (read here: no process start in the timing)."""
    data: dict[str, Any] = orjson.loads((resolve_paths().data_dir / STATUS_FILE).read_bytes())
    return data


class _ReceiverThread:
    """The reference receiver on its own event loop in a thread."""

    def __init__(self, data: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.receiver = Receiver(data)

    def __enter__(self) -> Receiver:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self.loop).result(30)
        return self.receiver

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.receiver.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(name="receiver")
def fixture_receiver(tmp_path: Path) -> Iterator[Receiver]:
    with _ReceiverThread(tmp_path / "rx") as rx:
        yield rx


def _store_counts() -> tuple[int, dict[str, int]]:
    async def read() -> tuple[int, dict[str, int]]:
        store = open_store(resolve_paths(), load_settings(), readonly=True)
        try:
            stats = await store.stats()
        finally:
            await store.aclose()
        return stats.total, stats.by_category

    return asyncio.run(read())


def test_agent_run_observed_withdrawn_and_stopped(home: Path, receiver: Receiver) -> None:
    grant = _wking("consent", "grant", "--yes", "operation_logs", "device_info")
    assert grant.returncode == 0, grant.stderr
    assert _status()["status"] is None  # no agent has run here
    agent = subprocess.Popen(
        [
            str(WKING),
            "--simulate",
            "3",
            "--json",
            "agent",
            "run",
            "--interval",
            "0.5",
            "--endpoint",
            receiver.endpoint,
            "--ca-file",
            str(receiver.ca_file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "WKING_UPLOAD__INTERVAL": "0.5"},
    )
    try:
        _wait_for(
            lambda: _status()["running"] and _status()["status"]["records"] > 0,
            30,
            "the agent is reported running with records",
        )
        report = _status()
        assert report["status"]["pid"] == agent.pid
        assert "OperationLogCollector" in report["status"]["active"]
        text = _wking("agent", "status")
        assert text.stdout.startswith(f"agent running (pid {agent.pid}) since "), text.stdout
        _wait_for(lambda: receiver.stats.stored > 0, 30, "records reach the receiver")

        asked = time.monotonic()
        withdraw = _wking("consent", "withdraw", "--yes", "operation_logs")
        assert withdraw.returncode == 0, withdraw.stderr
        command_s = time.monotonic() - asked
        stopped_in = _wait_for(
            lambda: "OperationLogCollector" not in _status_file()["active"],
            1.0,
            "the withdrawn category stops",
        )
        print(
            f"withdraw command {command_s:.2f} s (it waits for the agent to shred); the agent's "
            f"status showed operation logs stopped {stopped_in:.2f} s after it returned"
        )
        received_at_withdrawal = receiver.stats.stored

        agent.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = agent.communicate(timeout=10)
        took = time.monotonic() - started
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, err
    assert took < 10
    summary = json.loads(out)
    assert summary["stopped_by"] == "SIGTERM"
    stored = sum(summary["records"].values())
    kept, by_category = _store_counts()
    assert "operation_logs" not in by_category  # shredded at the withdrawal
    rows = receiver.export()
    assert len({row["record_id"] for row in rows}) == len(rows)
    # the SIGTERM may cut a request the receiver already stored: those records were not
    # acknowledged, so they are still on disk here (the next drain re-sends, the receiver dedupes)
    assert summary["upload"]["sent"] <= len(rows) <= summary["upload"]["sent"] + kept
    operation_logs_kept_until_withdrawal = sum(
        1 for row in rows if row.get("category") == "operation_logs"
    )
    assert operation_logs_kept_until_withdrawal <= received_at_withdrawal
    # every record the collectors stored is in the receiver, still on disk, or was shredded by
    # the withdrawal (operation logs not yet uploaded)
    shredded = stored - summary["upload"]["sent"] - kept
    assert shredded >= 0, (stored, summary["upload"]["sent"], kept)
    assert summary["records"]["OperationLogCollector"] - operation_logs_kept_until_withdrawal >= (
        shredded
    )
    print(
        f"stored {stored}: uploaded {len(rows)}, on disk {kept}, shredded {shredded}; "
        f"SIGTERM to exit {took:.2f} s"
    )
    report = _status()
    assert report["running"] is False
    assert report["status"]["state"] == "stopped"


def test_status_of_a_killed_agent_says_not_running(home: Path) -> None:
    _wking("consent", "grant", "--yes", "device_info")
    agent = subprocess.Popen(
        [str(WKING), "--simulate", "1", "agent", "run", "--interval", "0.3"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: _status()["running"], 30, "the agent is reported running")
    finally:
        agent.kill()  # SIGKILL: the file stays, saying "running"
        agent.wait()
    report = _status()
    assert report["running"] is False
    assert report["status"]["state"] == "running"  # what the file says; not believed
    text = _wking("agent", "status").stdout
    assert text.startswith("not running (last seen "), text


def test_status_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "nothing-here"
    proc = _wking("agent", "status", env={"WKING_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "no agent has run for this home"
    assert not home.exists()


def test_a_hostile_status_file_is_escaped_and_not_believed(home: Path) -> None:
    paths = resolve_paths()
    paths.ensure()
    hostile = {
        "state": "running",
        "pid": os.getpid(),  # alive, but it holds no store: not an agent
        "started_at": "\x1b]0;owned\x07",
        "updated_at": 1e300,
        "cycles": "\x1b[2J[bold]x",
        "last_errors": [{"at": 0, "part": "\u202e", "type": "X", "message": "a\nerror: forged"}],
    }
    (paths.data_dir / STATUS_FILE).write_bytes(orjson.dumps(hostile))
    proc = _wking("agent", "status")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("not running (last seen ")
    for raw in ("\x1b", "\x07", "\u202e", "\nerror: forged"):
        assert raw not in proc.stdout
    (paths.data_dir / STATUS_FILE).write_bytes(b"\x00not json")
    proc = _wking("agent", "status")
    assert proc.returncode == 6
    assert proc.stderr.startswith("error: ")
    assert len(proc.stderr.splitlines()) == 1
