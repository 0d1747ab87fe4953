"""The Bluetooth commands of ``wking``, run against simulated speakers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from wking_device.cli import cli
from wking_device.config import resolve_paths
from wking_device.crypto import key_dir

ADDRESS = "C0:57:4B:00:00:02"


@pytest.fixture(name="runner")
def fixture_runner() -> CliRunner:
    return CliRunner()


def _json(runner: CliRunner, *args: str) -> object:
    result = runner.invoke(cli, ["--simulate", "3", "--json", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_scan_json_lists_the_deterministic_fleet(runner: CliRunner) -> None:
    rows = _json(runner, "scan", "--timeout", "1")
    assert isinstance(rows, list)
    assert {row["address"] for row in rows} == {
        "C0:57:4B:00:00:01",
        "C0:57:4B:00:00:02",
        "C0:57:4B:00:00:03",
    }
    for row in rows:
        assert row["name"].startswith("W-KING")
        assert isinstance(row["rssi"], int)
        assert row["model"] in {"d8-mini", "x10", "t9-pro"}


def test_scan_with_several_adapters_scans_each(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # `[ble] adapters`: the simulated world has one adapter (hci0): hci1 is passed over, once
    monkeypatch.setenv("WKING_BLE__ADAPTERS", '["hci0", "hci1"]')
    result = runner.invoke(
        cli, ["--simulate", "3", "--json", "scan", "--timeout", "1"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 3
    assert {row["adapter"] for row in rows} == {"hci0"}  # the adapter that heard each
    warned = [r.getMessage() for r in caplog.records if "hci1" in r.getMessage()]
    assert warned == [
        "cannot scan with 'hci1': cannot start scanning: scan: adapter 'hci1' not found"
    ]


def test_scan_table_names_the_adapter_only_when_several_scan(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = runner.invoke(cli, ["--simulate", "2", "scan", "--timeout", "1"], catch_exceptions=False)
    assert one.exit_code == 0, one.output
    assert "Adapter" not in one.stdout
    monkeypatch.setenv("WKING_BLE__ADAPTERS", '["hci0", "hci1"]')
    several = runner.invoke(
        cli, ["--simulate", "2", "scan", "--timeout", "1"], catch_exceptions=False
    )
    assert several.exit_code == 0, several.output
    assert "Adapter" in several.stdout
    rows = [line for line in several.stdout.splitlines() if ADDRESS in line]
    assert len(rows) == 1
    assert "hci0" in rows[0]


def test_scan_watch_lines_name_the_adapter_when_several_listen(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--simulate", "2", "scan", "--watch", "--duration", "1"]
    one = runner.invoke(cli, args, catch_exceptions=False)
    assert one.exit_code == 0, one.output
    assert ADDRESS in one.stdout
    assert "via" not in one.stdout
    monkeypatch.setenv("WKING_BLE__ADAPTERS", '["hci0", "hci1"]')
    several = runner.invoke(cli, args, catch_exceptions=False)
    assert several.exit_code == 0, several.output
    (line,) = [line for line in several.stdout.splitlines() if ADDRESS in line]
    assert line.endswith("via hci0")


def test_scan_watch_with_several_adapters_listens_on_each(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # `[ble] adapters` reaches --watch as it reaches a single scan: hci0 listens, the simulated
    # world has no hci1, which is passed over with one warning
    monkeypatch.setenv("WKING_BLE__ADAPTERS", '["hci0", "hci1"]')
    result = runner.invoke(
        cli,
        ["--simulate", "2", "--json", "scan", "--watch", "--duration", "1"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {row["address"] for row in rows} == {"C0:57:4B:00:00:01", ADDRESS}
    warned = [r.getMessage() for r in caplog.records if "hci1" in r.getMessage()]
    assert warned == [
        "cannot scan with 'hci1': cannot start scanning: scan: adapter 'hci1' not found"
    ]


def test_scan_watch_json_is_one_object_a_line_and_ends_with_the_duration(
    runner: CliRunner,
) -> None:
    result = runner.invoke(cli, ["--simulate", "2", "--json", "scan", "--watch", "--duration", "1"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {row["address"] for row in rows} == {"C0:57:4B:00:00:01", ADDRESS}
    assert all(row["event"] == "appeared" and row["available"] for row in rows)
    assert set(rows[0]) == {
        "event",
        "address",
        "name",
        "model",
        "rssi",
        "tx_power",
        "interval_s",
        "available",
        "adapter",
        "returned",
    }
    assert rows[0]["adapter"] is None  # no adapter named: the platform's default


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--watch", "--timeout", "1"], "--watch ends with --duration"),
        (["--duration", "1"], "--duration goes with --watch"),
    ],
)
def test_scan_watch_options_that_do_not_go_together(
    runner: CliRunner, args: list[str], message: str
) -> None:
    result = runner.invoke(cli, ["--simulate", "1", "scan", *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_scan_watch_ends_on_ctrl_c(tmp_path: Path) -> None:
    wking = shutil.which("wking", path=str(Path(sys.executable).parent))
    assert wking is not None
    proc = subprocess.Popen(
        [wking, "--simulate", "1", "--json", "scan", "--watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killer = threading.Timer(60, proc.kill)  # a bound, should the line never come
    killer.start()
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["event"] == "appeared"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        killer.cancel()
    assert proc.returncode == 130
    assert "interrupted" in err


def test_info_json_has_the_documented_fields(runner: CliRunner) -> None:
    data = _json(runner, "info", ADDRESS)
    assert isinstance(data, dict)
    assert data["address"] == ADDRESS
    assert data["manufacturer"] == "W-KING"
    assert data["model"] == "x10"
    assert data["firmware"]
    assert 0 <= data["battery"] <= 100


def test_control_volume_reports_the_new_state(runner: CliRunner) -> None:
    data = _json(runner, "control", ADDRESS, "volume", "77")
    assert isinstance(data, dict)
    assert data["state"]["volume"] == 77


def test_control_eq_and_light(runner: CliRunner) -> None:
    eq = _json(runner, "control", ADDRESS, "eq", "bass-boost")
    assert isinstance(eq, dict)
    assert eq["state"]["eq"] == "bass_boost"
    light = _json(runner, "control", ADDRESS, "light", "rainbow")
    assert isinstance(light, dict)
    assert light["state"]["light"] == "rainbow"


def test_control_rejects_out_of_range_volume_as_usage(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--simulate", "3", "control", ADDRESS, "volume", "101"])
    assert result.exit_code == 2


def test_devices_bind_list_unbind(runner: CliRunner, home: Path) -> None:
    bound = _json(runner, "devices", "bind", ADDRESS, "--alias", "kitchen")
    assert isinstance(bound, dict)
    assert bound["bound"] is True
    listed = _json(runner, "devices", "list")
    assert isinstance(listed, list)
    assert [(d["address"], d["alias"]) for d in listed] == [(ADDRESS, "kitchen")]
    # the binding file holds no plaintext address
    for path in home.rglob("*"):
        if path.is_file():
            assert ADDRESS.encode() not in path.read_bytes()
            assert ADDRESS.replace(":", "").encode() not in path.read_bytes()
    _json(runner, "devices", "unbind", ADDRESS)
    assert _json(runner, "devices", "list") == []
    again = runner.invoke(cli, ["devices", "unbind", ADDRESS])
    assert again.exit_code == 2


def test_doctor_json(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--json", "doctor"], catch_exceptions=False)
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["bleak"].startswith("3.1")
    assert report["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "key_store" in report


def test_unknown_address_exits_4_with_one_line_and_no_traceback(home: Path) -> None:
    wking = Path(sys.executable).with_name("wking")
    # the scan's length is not under test: a short one finds nothing just as surely
    env = {**os.environ, "WKING_BLE__SCAN_TIMEOUT": "0.5"}
    proc = subprocess.run(
        [str(wking), "--simulate", "2", "info", "C0:57:4B:00:00:09"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert proc.returncode == 4
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: [MAC] did not advertise")
    assert "C0:57:4B" not in proc.stderr  # stderr is a log under systemd: no MAC there
    verbose = subprocess.run(
        [str(wking), "-v", "--simulate", "2", "info", "C0:57:4B:00:00:09"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert verbose.returncode == 4
    assert "Traceback" in verbose.stderr
    assert "C0:57:4B" not in verbose.stderr


def test_simulated_addresses_are_the_same_in_every_process(home: Path) -> None:
    wking = Path(sys.executable).with_name("wking")
    outputs = [
        subprocess.run(
            [str(wking), "--simulate", "3", "--json", "scan", "--timeout", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for _ in range(2)
    ]
    first, second = (sorted((r["address"], r["name"]) for r in json.loads(o)) for o in outputs)
    assert first == second
    assert len(first) == 3


def test_devices_list_creates_no_key_store(runner: CliRunner, home: Path) -> None:
    result = runner.invoke(cli, ["--json", "devices", "list"], catch_exceptions=False)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert not key_dir(resolve_paths()).exists()
    again = runner.invoke(cli, ["devices", "unbind", ADDRESS])
    assert again.exit_code == 2
    assert not key_dir(resolve_paths()).exists()


@pytest.mark.parametrize(
    ("command", "code"),
    [(["devices", "list"], 0), (["--simulate", "2", "devices", "bind", ADDRESS], 6)],
)
def test_devices_never_replace_a_missing_key_store(
    runner: CliRunner, home: Path, command: list[str], code: int
) -> None:
    # A ledger exists; its key store is gone (e.g. a restore that missed data/keys).
    granted = runner.invoke(cli, ["consent", "grant", "--yes", "operation_logs"])
    assert granted.exit_code == 0, granted.output
    keys = key_dir(resolve_paths())
    shutil.rmtree(keys)
    result = runner.invoke(cli, command)
    assert result.exit_code == code, result.output
    assert not keys.exists()
    # ... so the ledger still reads as "key missing" (6), not as "tampered with" (7)
    status = runner.invoke(cli, ["consent", "status"])
    assert status.exit_code == 6, status.output
