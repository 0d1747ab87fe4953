"""A ledger rolled back to an older valid copy is reported as tampered (issue 7, item 11).

What is claimed (docs/security.md): the key store file keeps the ledger's head (entry count and
last hash, HMAC'd) as an anchor; restoring an older copy of ``ledger.jsonl`` and its head, or
deleting both, is detected (exit 7). Rewriting the anchor too, with the key, is not.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest


def _wking(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from wking_device.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(os.environ),
    )


def _consent_dir(home: Path) -> Path:
    return home / "data" / "consent"


def test_a_ledger_restored_from_before_a_withdrawal_is_tampered(home: Path, tmp_path: Path) -> None:
    assert _wking("consent", "grant", "--yes", "operation_logs").returncode == 0
    saved = tmp_path / "saved"
    shutil.copytree(_consent_dir(home), saved)  # ledger + its HMAC'd head, before withdrawing
    assert _wking("consent", "withdraw", "--yes", "operation_logs").returncode == 0
    for name in ("ledger.jsonl", "ledger.jsonl.head"):
        shutil.copy2(saved / name, _consent_dir(home) / name)
    result = _wking("--json", "consent", "status")
    assert result.returncode == 7, result.stdout + result.stderr
    assert "rolled back" in result.stderr
    # the grant the rollback tried to bring back is not in force
    assert '"state": "granted"' not in result.stdout


def test_a_deleted_ledger_is_tampered_once_anything_was_recorded(home: Path) -> None:
    assert _wking("consent", "grant", "--yes", "device_info").returncode == 0
    for name in ("ledger.jsonl", "ledger.jsonl.head"):
        (_consent_dir(home) / name).unlink()
    result = _wking("consent", "status")
    assert result.returncode == 7
    assert "rolled back" in result.stderr


def test_reset_after_a_rollback_starts_a_ledger_the_anchor_accepts(home: Path) -> None:
    assert _wking("consent", "grant", "--yes", "device_info").returncode == 0
    (_consent_dir(home) / "ledger.jsonl").unlink()
    (_consent_dir(home) / "ledger.jsonl.head").unlink()
    assert _wking("consent", "reset", "--yes").returncode == 0
    assert _wking("consent", "status").returncode == 0
    assert _wking("consent", "grant", "--yes", "device_info").returncode == 0
    assert _wking("consent", "status").returncode == 0


def test_an_existing_ledger_without_an_anchor_gets_one(home: Path) -> None:
    # an installation from before anchors: the first writable open records the anchor
    assert _wking("consent", "grant", "--yes", "device_info").returncode == 0
    keystore = home / "data" / "keys" / "keystore.json"
    assert b'"anchors"' in keystore.read_bytes()


@pytest.mark.parametrize("mode", [0o644, 0o666])
def test_receipts_out_makes_an_existing_file_private(tmp_path: Path, mode: int) -> None:
    assert _wking("consent", "grant", "--yes", "device_info").returncode == 0
    out = tmp_path / "receipts.json"
    out.write_text("old")
    out.chmod(mode)
    assert _wking("consent", "receipts", "--out", str(out)).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert b"receipts" in out.read_bytes()


def test_loose_ledger_permissions_are_warned_about_and_flagged_by_doctor(home: Path) -> None:
    assert _wking("consent", "grant", "--yes", "device_info").returncode == 0
    ledger = _consent_dir(home) / "ledger.jsonl"
    ledger.chmod(0o666)
    home.chmod(0o777)
    result = _wking("consent", "status")
    assert result.returncode == 0
    assert str(ledger) in result.stderr
    assert "loose permissions" in result.stderr
    doctor = _wking("doctor")
    assert doctor.returncode != 0
    assert str(ledger) in doctor.stdout + doctor.stderr


def test_a_key_file_open_to_others_is_refused(home: Path) -> None:
    assert _wking("consent", "grant", "--yes", "device_info").returncode == 0
    (home / "data" / "keys" / "master.key").chmod(0o666)
    result = _wking("consent", "status")
    assert result.returncode == 6


def test_removing_the_anchor_as_well_is_noticed(home: Path, tmp_path: Path) -> None:
    # deleting the anchor needs no key: the ledger's head says it is anchored
    assert _wking("consent", "grant", "--yes", "operation_logs").returncode == 0
    saved = tmp_path / "saved"
    shutil.copytree(_consent_dir(home), saved)
    assert _wking("consent", "withdraw", "--yes", "operation_logs").returncode == 0
    for name in ("ledger.jsonl", "ledger.jsonl.head"):
        shutil.copy2(saved / name, _consent_dir(home) / name)
    keystore = home / "data" / "keys" / "keystore.json"
    document = json.loads(keystore.read_text())
    del document["anchors"]
    keystore.write_text(json.dumps(document))
    result = _wking("consent", "status")
    assert result.returncode == 7, result.stderr
