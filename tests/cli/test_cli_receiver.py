"""``wking receiver run`` in a real process: prints where it listens, stores, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from wking_device.cli import cli
from wking_device.upload import (
    LogsFramer,
    OTLPSender,
    TLSOptions,
    build_ssl_context,
    encode_log_record,
    gzip_body,
)


def _read_json_object(proc: subprocess.Popen[str]) -> dict[str, str]:
    assert proc.stdout is not None
    lines: list[str] = []
    while True:  # bounded by the test timeout; the process prints the object at start
        line = proc.stdout.readline()
        assert line, f"receiver exited early: {proc.stderr.read() if proc.stderr else ''}"
        lines.append(line)
        if line.rstrip() == "}":
            loaded: dict[str, str] = json.loads("".join(lines))
            return loaded


def test_run_post_stop_and_export(tmp_path: Path) -> None:
    data = tmp_path / "rx"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wking_device",
            "--json",
            "receiver",
            "run",
            "--port",
            "0",
            "--data",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "WKING_HOME": str(tmp_path / "home")},
    )
    try:
        info = _read_json_object(proc)
        assert info["ca_file"] == str(data / "ca.pem")
        assert info["endpoint"].startswith("https://127.0.0.1:")

        async def post() -> None:
            context = build_ssl_context(TLSOptions(ca_file=Path(info["ca_file"])))
            record = encode_log_record(
                record_id="cli-1",
                category="operation_logs",
                consent_id="c",
                policy_version="1.1",
                body='{"x":1}',
                time_unix_nano=1,
            )
            async with OTLPSender(info["endpoint"], ssl_context=context) as sender:
                await sender.send(gzip_body(LogsFramer("inst").frame([record])))

        asyncio.run(post())
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr

    result = CliRunner().invoke(cli, ["--json", "receiver", "export", "--data", str(data)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["record_id"], r["category"], r["installation_id"], r["body"]) for r in rows] == [
        ("cli-1", "operation_logs", "inst", '{"x":1}')
    ]


def test_export_of_a_directory_without_data_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["receiver", "export", "--data", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no receiver data" in result.stderr
    assert not (tmp_path / "none").exists()


def test_a_bad_fault_plan_exits_2_with_one_line(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text("reset_rate = 7\n")
    result = CliRunner().invoke(
        cli,
        [
            "receiver",
            "run",
            "--port",
            "0",
            "--data",
            str(tmp_path / "rx"),
            "--fault-plan",
            str(plan),
        ],
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "reset_rate" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["consent", "status"], ["agent", "status"], ["demo", "--help"]],
    ids=" ".join,
)
def test_paths_that_do_not_use_them_import_no_aiohttp_bumble_or_receiver(
    argv: list[str], home: Path
) -> None:
    # aiohttp, bumble and the receiver cost tens of MB and a second: only uploads, --simulate,
    # `wking demo` itself and `wking receiver` load them
    del home
    code = (
        "import sys\n"
        "from wking_device.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('aiohttp', 'bumble', 'wking_device.receiver', "
        "'wking_device.upload', 'wking_device.sim._world') if m in sys.modules), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stderr.strip().splitlines()[-1] == "[]", proc.stderr


def test_help_does_not_import_aiohttp() -> None:
    code = (
        "import sys\n"
        "from wking_device.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "try:\n    main(['receiver', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('aiohttp' in sys.modules, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert proc.stderr.strip() == "False"


def test_run_prints_a_hostile_data_path_escaped_on_one_line(tmp_path: Path) -> None:
    # the --data path is the caller's: an escape sequence or a newline in it must not reach the
    # terminal raw nor forge a line
    from wking_device.cli._term import visible  # noqa: PLC0415

    data = tmp_path / "rx\x1b]0;owned\x07\nforged: line\u202e"
    args = ["receiver", "run", "--port", "0", "--data", str(data)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "wking_device", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "WKING_HOME": str(tmp_path / "home")},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]  # bounded by the test timeout
        proc.send_signal(signal.SIGTERM)
        rest, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, stderr
    assert lines[0].startswith(b"listening on https://127.0.0.1:")
    assert lines[1].decode() == f"CA certificate: {visible(data / 'ca.pem')}\n"
    assert rest == b""
