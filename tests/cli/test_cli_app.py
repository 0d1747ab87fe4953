"""The ``wking`` command as a new user meets it: errors, exit codes, output and signals.

Most tests run the installed ``wking`` script in a subprocess, because what is checked (one line
on stderr, no traceback, the exit code, the terminal's encoding, signals, a closed pipe) is what
the process does, not what a click test runner sees.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wking_device.agent import STATUS_FILE
from wking_device.cli import cli
from wking_device.cli._app import AppContext

WKING = str(Path(sys.executable).with_name("wking"))
ADDRESS = "C0:57:4B:00:00:02"


def _wking(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [WKING, *args],
        capture_output=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def _error_lines(stderr: bytes) -> list[str]:
    return [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]


# --- encodings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_an_ascii_terminal_does_not_crash_on_non_ascii_text(
    tmp_path: Path, json_flag: list[str]
) -> None:
    home = tmp_path / "wké"
    env = {"PYTHONIOENCODING": "ascii", "COLUMNS": "500"}  # wide enough for the whole path
    proc = _wking("--home", str(home), *json_flag, "doctor", env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
    if json_flag:
        # JSON is UTF-8 whatever the locale (RFC 8259 §8.1)
        assert json.loads(proc.stdout.decode("utf-8"))["home"] == str(home)
    else:
        assert b"\\xe9" in proc.stdout  # escaped, not a crash


# --- errors -------------------------------------------------------------------------------------


@pytest.fixture(name="broken_command")
def fixture_broken_command() -> object:
    """A command with a bug, added to the real group for one test."""

    @click.command("broken-for-test")
    def broken() -> None:
        raise ValueError("a bug")

    cli.add_command(broken)
    yield broken
    del cli.commands["broken-for-test"]


@pytest.mark.usefixtures("broken_command")
def test_an_unexpected_exception_is_one_line_and_exit_1() -> None:
    result = CliRunner().invoke(cli, ["broken-for-test"])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = _error_lines(result.stderr.encode())
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: unexpected ValueError: a bug")
    assert "-v" in lines[0]


def test_a_ctrl_c_wrapped_by_the_interpreter_is_an_interruption() -> None:
    # Ctrl-C while an import runs a class body's __set_name__ (Python 3.11 wraps the
    # KeyboardInterrupt in a RuntimeError): the documented outcome, not "a bug in wking"
    @click.command("interrupted-for-test")
    def interrupted() -> None:
        wrapped = RuntimeError("Error calling __set_name__ on 'cached_property'")
        wrapped.__cause__ = KeyboardInterrupt()
        raise wrapped

    cli.add_command(interrupted)
    try:
        result = CliRunner().invoke(cli, ["interrupted-for-test"])
    finally:
        del cli.commands["interrupted-for-test"]
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted"


@pytest.mark.usefixtures("broken_command")
def test_an_unexpected_exception_shows_its_traceback_with_v() -> None:
    result = CliRunner().invoke(cli, ["-v", "broken-for-test"])
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert 'raise ValueError("a bug")' in result.stderr


def test_an_untranslated_os_error_is_one_line(tmp_path: Path) -> None:
    out = tmp_path / "no-such-dir" / "receipts.json"
    proc = _wking("consent", "receipts", "--out", str(out))
    assert proc.returncode == 1
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr.decode()
    assert lines[0].startswith("error: ")
    assert str(out) in lines[0]


def test_a_home_that_cannot_be_created_is_one_line_and_exit_6(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    # a command that writes (one that only reports creates nothing: issue 7, item 13)
    proc = _wking("--home", str(blocker / "home"), "consent", "grant", "--yes", "device_info")
    assert proc.returncode == 6
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr.decode()
    assert str(blocker / "home") in lines[0]


def test_a_malformed_variable_is_one_line_naming_it() -> None:
    proc = _wking("--simulate", "1", "scan", env={"WKING_UPLOAD__SPKI_PINS": "not-json"})
    assert proc.returncode == 2
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr.decode()
    assert "WKING_UPLOAD__SPKI_PINS" in lines[0]


def test_doctor_reports_a_malformed_config_file_instead_of_refusing(home: Path) -> None:
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text("[ble\n")
    proc = _wking("--json", "doctor")
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    assert report["config"].startswith("error: ")
    assert "config.toml:1" in report["config"]
    assert report["python"] == ".".join(map(str, sys.version_info[:3]))
    assert len(_error_lines(proc.stderr)) == 1
    # commands that need no settings still run
    assert _wking("policy", "versions").returncode == 0


def test_doctor_reports_a_missing_key_store_beside_existing_data(home: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["consent", "grant", "--yes", "device_info"]).exit_code == 0
    for file in (home / "data" / "keys").iterdir():
        file.unlink()
    result = runner.invoke(cli, ["--json", "doctor"])
    assert result.exit_code == 6
    assert json.loads(result.stdout)["key_store"].startswith("error: ")


# --- logging ------------------------------------------------------------------------------------


def test_verbose_shows_our_debug_logs_not_bumble_packet_dumps() -> None:
    proc = _wking("-v", "--simulate", "2", "--json", "info", ADDRESS)
    assert proc.returncode == 0, proc.stderr.decode()
    stderr = proc.stderr.decode()
    assert "DEBUG wking_device." in stderr
    assert "DEBUG root" not in stderr  # bumble's gatt_server logs through the root logger
    assert "bumble" not in stderr
    assert "\x1b[" not in stderr  # bumble's colour codes
    assert ADDRESS not in stderr  # redacted
    json.loads(proc.stdout)


# --- signals and pipes --------------------------------------------------------------------------


def _cycles(home: Path) -> int:
    """The cycles a running agent reported in its status file (0 before the first)."""
    try:
        status = json.loads((home / "data" / STATUS_FILE).read_bytes())
    except (OSError, ValueError):  # not written yet
        return 0
    return int(status["cycles"])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_running_agent_gracefully_with_its_summary(
    home: Path, sig: signal.Signals
) -> None:
    # Ctrl-C (SIGINT) or systemd's stop (SIGTERM): the agent flushes, closes the store and
    # prints the run's summary; nothing on stderr, exit 0.
    granted = _wking("consent", "grant", "--yes", "device_info")
    assert granted.returncode == 0, granted.stderr
    proc = subprocess.Popen(
        [WKING, "--json", "--simulate", "3", "agent", "run", "--interval", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        # a child of a shell job may inherit SIGINT ignored; the agent is run as a user would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    try:
        # wait until the agent's status file shows a whole cycle (a fixed wait failed under load)
        deadline = time.monotonic() + 60
        while _cycles(home) < 1:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["stopped_by"] == sig.name
    assert summary["cycles"] >= 1
    assert _error_lines(stderr) == []
    # the store was closed cleanly: its lock is free and it opens for writing
    again = subprocess.run(
        [WKING, "--json", "data", "status"], capture_output=True, text=True, timeout=60, check=False
    )
    assert again.returncode == 0, again.stderr


def test_a_closed_stdout_is_a_quiet_exit() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(
            [WKING, "--json", "doctor"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 1
    assert proc.stderr == b""


# --- the sim extra ------------------------------------------------------------------------------


def test_simulate_without_bumble_names_the_extra(tmp_path: Path) -> None:
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'bumble' or name.startswith('bumble.'):\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    proc = _wking("--simulate", "2", "scan", env={"PYTHONPATH": str(hide)})
    assert proc.returncode == 4
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr.decode()
    assert 'pip install "bumble==0.0.236"' in lines[0]


# --- usage errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["nosuch"],
        ["--simulate", "many", "scan"],
        ["info"],
        ["control", ADDRESS, "eq", "loud"],
        ["consent", "grant", "no_such_category"],
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(args: list[str]) -> None:
    proc = _wking(*args)
    assert proc.returncode == 2
    assert proc.stdout == b""
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr.decode()
    assert lines[0].startswith("error: ")


@pytest.mark.parametrize(
    "args",
    [["info", "kitchen"], ["control", "C0:57:4B:00:00", "volume", "3"], ["devices", "bind", "x"]],
)
def test_a_malformed_address_is_a_usage_error_before_any_scan(args: list[str]) -> None:
    # without the check, each of these scanned for the whole scan timeout, then exited 4
    # advising to move the speaker closer
    proc = _wking("--simulate", "1", *args)
    assert proc.returncode == 2
    lines = _error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr.decode()
    assert "is not a Bluetooth address" in lines[0]


def test_addresses_are_accepted_in_lower_case() -> None:
    result = CliRunner().invoke(cli, ["--simulate", "2", "--json", "info", ADDRESS.lower()])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["address"] == ADDRESS


def test_help_of_a_control_action_needs_no_real_address() -> None:
    # the usage line click prints names it 'wking control ADDRESS eq'; that must work as written
    result = CliRunner().invoke(cli, ["control", "ADDRESS", "eq", "--help"])
    assert result.exit_code == 0, result.output
    assert "bass-boost" in result.stdout


def test_running_the_command_many_times_in_one_process_keeps_logging_working() -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["policy", "versions"]).exit_code == 0
    factory = logging.getLogRecordFactory()
    for _ in range(3):
        assert runner.invoke(cli, ["policy", "versions"]).exit_code == 0
    # each run used to wrap the record factory once more: RecursionError after ~1000 runs
    assert logging.getLogRecordFactory() is factory


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "--timeout", "nan"],
        ["scan", "--timeout", "inf"],
        ["agent", "run", "--duration", "nan"],
        ["agent", "run", "--duration", "inf"],
        ["agent", "run", "--interval", "nan"],
        ["agent", "run", "--interval", "1e309"],
    ],
)
def test_a_number_of_seconds_must_be_finite(args: list[str]) -> None:
    # nan passes every range check (all comparisons are false): refused by name, exit 2
    result = CliRunner().invoke(cli, ["--simulate", "1", *args])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--" in result.stderr


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "many"])
def test_agent_cycles_must_be_a_whole_number_of_at_least_one(value: str) -> None:
    result = CliRunner().invoke(cli, ["--simulate", "1", "agent", "run", "--cycles", value])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--cycles'" in result.stderr


def test_a_ctrl_c_before_the_loop_starts_leaves_no_unawaited_coroutine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C can land after the command built its coroutine and before asyncio.run started it
    # (the test signal suite saw "coroutine ... was never awaited" on stderr): the signal's
    # timing is what is simulated here, by an asyncio.run that is interrupted at once.
    async def work() -> int:
        return 1

    def interrupted(coro: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(asyncio, "run", interrupted)
    coro = work()
    with pytest.raises(KeyboardInterrupt):
        AppContext().run(coro)
    assert coro.cr_frame is None  # closed: nothing to warn about at collection
    del coro
    gc.collect()
