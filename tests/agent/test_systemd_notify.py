"""``sd_notify`` under ``Type=notify``: a real ``wking agent run`` talks to a real datagram socket.

The test binds the Unix datagram socket systemd would (``NOTIFY_SOCKET``), starts the agent as a
subprocess on simulated speakers, and reads what arrives: ``READY=1`` once it runs, ``WATCHDOG=1``
again and again (``WATCHDOG_USEC`` set small), ``STOPPING=1`` on SIGTERM, and a clean exit.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from wking_device.agent._systemd import SystemdNotifier
from wking_device.cli import cli

WKING = str(Path(sys.executable).with_name("wking"))


def _grant(home: Path, *categories: str) -> None:
    """Grant in-process: set-up, not what is tested (a subprocess would cost a Python start-up)."""
    done = CliRunner().invoke(
        cli, ["consent", "grant", "--yes", *categories], env={"WKING_HOME": str(home)}
    )
    assert done.exit_code == 0, done.output


@pytest.fixture
def notify_socket():
    # a short directory: a Unix socket path is limited to 107 bytes, tmp_path can be longer
    directory = tempfile.mkdtemp(prefix="wk-sd-")
    path = str(Path(directory) / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(directory, ignore_errors=True)


def _receive(sock: socket.socket, until: float) -> dict[str, str] | None:
    """One message as a dict of its KEY=value lines, or None at ``until`` (monotonic)."""
    remaining = until - time.monotonic()
    if remaining <= 0:
        return None
    sock.settimeout(remaining)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return None
    return dict(line.split("=", 1) for line in data.decode().splitlines())


def _wait_for(sock: socket.socket, key: str, timeout: float = 60.0) -> list[dict[str, str]]:
    """Messages up to and including the first one holding ``key``."""
    until = time.monotonic() + timeout
    seen: list[dict[str, str]] = []
    while True:
        message = _receive(sock, until)
        assert message is not None, f"no {key} within {timeout} s; got {seen}"
        seen.append(message)
        if key in message:
            return seen


def test_agent_run_notifies_ready_watchdog_and_stopping(notify_socket, tmp_path: Path) -> None:
    sock, path = notify_socket
    env = {**os.environ, "WKING_HOME": str(tmp_path / "home")}
    env.pop("NOTIFY_SOCKET", None)
    _grant(tmp_path / "home", "operation_logs")
    env |= {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"}  # a ping every 50 ms
    proc = subprocess.Popen(
        [WKING, "--simulate", "2", "agent", "run", "--interval", "0.5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        before_ready = _wait_for(sock, "READY")
        assert before_ready[-1]["READY"] == "1"
        assert before_ready[-1]["STATUS"].startswith("running")
        # pings keep coming while it runs, each with the agent's counters
        pings = [m for m in _wait_for(sock, "WATCHDOG") if "WATCHDOG" in m]
        while len(pings) < 5:
            pings += [m for m in _wait_for(sock, "WATCHDOG") if "WATCHDOG" in m]
        assert all(m["WATCHDOG"] == "1" and "cycles" in m["STATUS"] for m in pings)
        # the polled reads skipped for want of a slot show beside the other counts
        assert all(re.search(r"\b\d+ reads skipped \(no free slot\)", m["STATUS"]) for m in pings)
        proc.send_signal(signal.SIGTERM)
        stopping = _wait_for(sock, "STOPPING", timeout=30)[-1]
        assert stopping["STOPPING"] == "1"
        assert "SIGTERM" in stopping["STATUS"]
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    # no watchdog ping after STOPPING (the task ended with the run)
    sock.setblocking(False)
    late = []
    while True:
        try:
            late.append(sock.recv(4096))
        except BlockingIOError:
            break
    assert not any(b"WATCHDOG=1" in message for message in late), late


def test_agent_run_without_notify_socket_sends_nothing_and_works(tmp_path: Path) -> None:
    env = {**os.environ, "WKING_HOME": str(tmp_path / "home")}
    env.pop("NOTIFY_SOCKET", None)
    env["WATCHDOG_USEC"] = "100000"  # a watchdog without a socket: ignored
    _grant(tmp_path / "home", "operation_logs")
    result = subprocess.run(
        [WKING, "--simulate", "1", "agent", "run", "--cycles", "1", "--interval", "0.2"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "systemd" not in result.stderr


def test_abstract_namespace_socket_receives() -> None:
    name = f"wking-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        notifier = SystemdNotifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier is not None
        assert notifier.ready("up")
        until = time.monotonic() + 10
        assert _receive(sock, until) == {"READY": "1", "STATUS": "up"}
        notifier.close()
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"NOTIFY_SOCKET": ""}, None),
        ({"NOTIFY_SOCKET": "relative/path"}, None),
        ({"NOTIFY_SOCKET": "vsock:2:1234"}, None),
        ({"NOTIFY_SOCKET": "/run/n"}, ("/run/n", None)),
        ({"NOTIFY_SOCKET": "@n"}, ("\0n", None)),
        ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "2000000"}, ("/run/n", 1.0)),
        (
            {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "42"},
            ("/run/n", 1.0),
        ),
        # the watchdog belongs to another process
        (
            {"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "7"},
            ("/run/n", None),
        ),
        ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "x"}, ("/run/n", None)),
        ({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "0"}, ("/run/n", None)),
    ],
)
def test_environment_is_read_as_systemd_documents(environ, expected) -> None:
    notifier = SystemdNotifier.from_environment(environ, pid=42)
    if expected is None:
        assert notifier is None
    else:
        assert notifier is not None
        assert (notifier.address, notifier.watchdog_s) == expected


def test_a_missing_socket_is_logged_once_and_never_raises(tmp_path: Path, caplog) -> None:
    notifier = SystemdNotifier(str(tmp_path / "absent"))
    assert not notifier.ready("up")
    assert not notifier.status("still")
    notifier.close()
    assert [r.getMessage() for r in caplog.records] == [
        "cannot notify systemd: No such file or directory"
    ]


def test_status_is_one_bounded_line(notify_socket) -> None:
    sock, path = notify_socket
    notifier = SystemdNotifier(path)
    # a speaker's name could end up in a status line: no line break can forge another key
    notifier.status("evil\nREADY=1\n" + "x" * 1000)
    message = sock.recv(4096).decode()
    assert message.count("\n") == 0
    assert message.startswith("STATUS=evil READY=1 x")
    assert len(message) <= len("STATUS=") + 200
    notifier.close()


def test_a_bounded_run_says_stopping_when_its_duration_is_over(
    notify_socket, tmp_path: Path
) -> None:
    sock, path = notify_socket
    env = {**os.environ, "WKING_HOME": str(tmp_path / "home")}
    env.pop("WATCHDOG_USEC", None)
    env.pop("NOTIFY_SOCKET", None)
    _grant(tmp_path / "home", "operation_logs")
    env["NOTIFY_SOCKET"] = path
    result = subprocess.run(
        [WKING, "--simulate", "1", "agent", "run", "--cycles", "1", "--interval", "0.2"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    messages = _wait_for(sock, "STOPPING", timeout=5)
    assert "READY" in messages[0]
    assert not any("WATCHDOG" in m for m in messages)  # no WATCHDOG_USEC: no pings
    assert messages[-1]["STATUS"] == "stopping (the run is over)"


async def test_a_signal_ends_the_watchdog_pings_at_once(
    notify_socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stop can take seconds (a Bluetooth call finishing); systemd stops watching at STOPPING=1,
    # and a ping after it would say the service is still running normally.
    from wking_device.cli._agent import _Run  # noqa: PLC0415

    sock, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    state = _Run()
    assert state.systemd is not None
    state.watchdog = asyncio.ensure_future(state.systemd.keep_watchdog())
    pinged = await asyncio.to_thread(_wait_for, sock, "WATCHDOG", 10)  # the loop keeps running
    assert "WATCHDOG" in pinged[-1]
    try:
        state.on_signal(signal.SIGTERM)
        await asyncio.wait({state.watchdog}, timeout=5)
        assert state.watchdog.cancelled(), "still pinging after STOPPING=1"
    finally:
        state.watchdog.cancel()
        state.systemd.close()


def test_a_full_socket_never_blocks_the_caller(notify_socket, caplog) -> None:
    # systemd busy (its queue full): notify runs on the agent's event loop, so it must give up
    # at once instead of blocking every speaker session until systemd reads again
    sock, path = notify_socket
    notifier = SystemdNotifier(path)
    outcomes: list[bool] = []

    def flood() -> None:
        for _ in range(100_000):  # far more than any queue holds (net.unix.max_dgram_qlen)
            if not notifier.status("x" * 200):
                outcomes.append(False)
                return
        outcomes.append(True)

    worker = threading.Thread(target=flood, daemon=True)
    worker.start()
    worker.join(timeout=10)
    blocked = worker.is_alive()
    sock.recv(4096)  # let a blocked sender go before the socket closes
    worker.join(timeout=10)
    assert not blocked, "notify blocked on a full socket"
    assert outcomes == [False]
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("cannot notify systemd: ")
    notifier.close()
