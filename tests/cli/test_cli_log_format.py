"""``--log-format json``: one JSON object a line, redacted and inert; text stays the default."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from wking_device._redact import install_redaction
from wking_device.cli._app import _JsonFormatter

WKING = Path(sys.executable).with_name("wking")
ADDRESS = "C0:57:4B:00:00:01"
# what a terminal acts on, raw (as in test_cli_terminal.py)
RAW = "\x1b\x07\x9b\u202e\u2028\r"


def _fail(message: str) -> None:
    raise ValueError(message)


def test_a_json_line_is_redacted_inert_and_complete() -> None:
    uninstall = install_redaction()
    try:
        record = logging.LogRecord(
            "wking_device.ble",
            logging.WARNING,
            __file__,
            1,
            "speaker %s said \x1b]0;x\x07 %s",
            (ADDRESS, "\u202eevil\nERROR forged"),
            None,
        )
    finally:
        uninstall()
    record.speaker = ADDRESS.lower()  # extras of every shape: a string, a dict, an object
    record.details = {"peer": ADDRESS.replace(":", "-"), "count": 3}
    record.thing = Path("/x") / ADDRESS
    try:
        _fail(f"lost {ADDRESS}")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = _JsonFormatter().format(record)
    assert "\n" not in line
    for char in RAW:
        assert char not in line
    entry = json.loads(line)
    assert list(entry)[:4] == ["time", "level", "logger", "message"]
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "wking_device.ble"
    assert entry["time"].endswith("Z")
    assert entry["message"].startswith("speaker [MAC] said \x1b]0;x\x07")  # exact once decoded
    assert entry["details"]["count"] == 3
    assert "ValueError" in entry["exception"]
    assert "C0:57" not in line.upper()
    assert "C0-57" not in line.upper()


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WKING), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_the_command_logs_json_lines(home: Path) -> None:
    del home
    for args, env in (
        (["--log-format", "json", "-v"], None),
        (["-v"], {"WKING_LOG_FORMAT": "json"}),
    ):
        proc = _run(*args, "--simulate", "1", "info", ADDRESS, env=env)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stderr.splitlines()
        assert lines, "debug logging produced lines"
        for line in lines:
            entry = json.loads(line)
            assert {"time", "level", "logger", "message"} <= set(entry)
        assert ADDRESS not in proc.stderr
        assert "[MAC]" in proc.stderr


def test_text_is_the_default_and_a_bad_format_is_a_usage_error(home: Path) -> None:
    del home
    proc = _run("-v", "--simulate", "1", "info", ADDRESS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0].startswith("DEBUG ")
    bad = _run("--log-format", "xml", "consent", "status")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ")


def test_the_agents_do_not_track_warning_is_a_json_line_too(home: Path) -> None:
    del home
    granted = _run("consent", "grant", "--yes", "operation_logs")
    assert granted.returncode == 0, granted.stderr
    args = ("--simulate", "1", "agent", "run", "--cycles", "1", "--interval", "0.3")
    proc = _run("--log-format", "json", *args, env={"DO_NOT_TRACK": "1"})
    assert proc.returncode == 0, proc.stderr
    entries = [json.loads(line) for line in proc.stderr.splitlines()]  # every line is JSON
    assert any(
        e["level"] == "WARNING" and e["message"].startswith("Do Not Track is on") for e in entries
    ), entries
    text = _run(*args, env={"DO_NOT_TRACK": "1"})
    assert text.stderr.startswith("warning: Do Not Track is on")
