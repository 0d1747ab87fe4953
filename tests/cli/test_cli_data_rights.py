"""``wking data export`` and ``wking data delete``: the owner's access and erasure, locally."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from wking_device.cli import cli
from wking_device.config import resolve_paths
from wking_device.crypto import open_key_store


@pytest.fixture(name="runner")
def fixture_runner() -> CliRunner:
    return CliRunner()


def _ok(runner: CliRunner, *args: str, input: str | None = None) -> str:
    result = runner.invoke(cli, list(args), input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def _collect(runner: CliRunner, *categories: str) -> None:
    _ok(runner, "consent", "grant", "--yes", *categories)
    _ok(runner, "--simulate", "2", "agent", "run", "--cycles", "1", "--interval", "0.5")


def _by_category(runner: CliRunner) -> dict[str, int]:
    return json.loads(_ok(runner, "--json", "data", "status"))["records"]["by_category"]


def test_export_gives_the_owner_every_record_decrypted(runner: CliRunner, tmp_path: Path) -> None:
    _collect(runner, "operation_logs", "device_info", "mac_addresses")
    out = tmp_path / "export.json"
    result = runner.invoke(cli, ["data", "export", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o777 == 0o600
    document = json.loads(out.read_bytes())
    counts = _by_category(runner)
    assert len(document["records"]) == sum(counts.values())
    assert {r["category"] for r in document["records"]} == set(counts)
    info = [r for r in document["records"] if r["category"] == "device_info"]
    assert info
    assert info[0]["body"]["manufacturer"] == "W-KING"
    assert all(r["consent_id"] and r["policy_version"] for r in document["records"])
    # the owner granted MAC addresses: by default the export shows them as [MAC] ...
    macs = [r["body"]["speaker_mac"] for r in document["records"] if "speaker_mac" in r["body"]]
    assert macs
    assert set(macs) == {"[MAC]"}
    assert b"C0:57:4B" not in out.read_bytes()
    assert "add --with-macs" in result.stderr
    # ... and in plain text only when asked for
    result = runner.invoke(
        cli, ["data", "export", "--with-macs", "--out", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_bytes())
    macs = [r["body"]["speaker_mac"] for r in document["records"] if "speaker_mac" in r["body"]]
    assert all(mac.startswith("C0:57:4B:") for mac in macs)
    assert "MAC addresses in plain text" in result.stderr


def test_export_of_some_categories_to_stdout(runner: CliRunner) -> None:
    _collect(runner, "operation_logs", "device_info")
    document = json.loads(_ok(runner, "data", "export", "device_info", "--out", "-"))
    assert document["categories"] == ["device_info"]
    assert document["records"]
    assert {r["category"] for r in document["records"]} == {"device_info"}


def test_export_makes_an_existing_file_private(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "export.json"
    out.write_text("old")
    out.chmod(0o644)
    _ok(runner, "data", "export", "--out", str(out))
    assert out.stat().st_mode & 0o777 == 0o600
    assert json.loads(out.read_bytes())["records"] == []


def test_delete_shreds_a_category_and_leaves_consent_alone(runner: CliRunner) -> None:
    _collect(runner, "operation_logs", "device_info")
    before = _by_category(runner)
    assert before.get("device_info", 0) > 0
    result = json.loads(_ok(runner, "--json", "data", "delete", "device_info", "--yes"))
    assert result["deleted"] == {"device_info": before["device_info"]}
    after = _by_category(runner)
    assert "device_info" not in after
    assert after["operation_logs"] == before["operation_logs"]
    exported = json.loads(_ok(runner, "data", "export", "--out", "-"))
    assert all(r["category"] != "device_info" for r in exported["records"])
    status = json.loads(_ok(runner, "consent", "status", "--json"))
    states = {c["category"]: c["state"] for c in status["categories"]}
    assert states["device_info"] == "granted"


def test_delete_asks_once_and_a_no_deletes_nothing(runner: CliRunner) -> None:
    _collect(runner, "device_info")
    before = _by_category(runner)
    declined = runner.invoke(cli, ["data", "delete", "--all"], input="n\n")
    assert declined.exit_code == 1
    assert _by_category(runner) == before
    _ok(runner, "data", "delete", "--all", input="y\n")
    assert _by_category(runner) == {}


def test_delete_needs_categories_and_knows_them(runner: CliRunner) -> None:
    assert runner.invoke(cli, ["data", "delete", "--yes"]).exit_code == 2
    result = runner.invoke(cli, ["data", "delete", "--yes", "browsing_history"])
    assert result.exit_code == 2
    assert "unknown data category" in result.stderr


def test_delete_all_destroys_the_data_keys_also_without_a_database(
    runner: CliRunner, home: Path
) -> None:
    # The database gone (removed by hand, or lost), its data keys are still in the key store and
    # open any copy of it made before: a full deletion destroyed none of them.
    _collect(runner, "device_info")
    paths = resolve_paths(home)
    assert open_key_store(paths, create=False).data_key_ids()
    (paths.data_dir / "records.sqlite3").unlink()
    result = json.loads(_ok(runner, "--json", "data", "delete", "--all", "--yes"))
    assert result["total"] == 0
    assert open_key_store(paths, create=False).data_key_ids() == {}


def test_delete_all_in_a_new_home_creates_nothing(runner: CliRunner, home: Path) -> None:
    result = json.loads(_ok(runner, "--json", "data", "delete", "--all", "--yes"))
    assert result == {"deleted": {}, "total": 0, "installation_id_rotated": False}
    data = resolve_paths(home).data_dir
    assert not data.exists() or not list(data.iterdir())


def test_export_to_a_missing_directory_is_a_one_line_storage_error(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "missing" / "dir" / "export.json"
    result = runner.invoke(cli, ["data", "export", "--out", str(out)])
    assert result.exit_code == 6, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: cannot write the export ")
    assert "No such file or directory" in result.stderr
    assert "Errno" not in result.stderr
    assert result.stderr.count("\n") == 1
