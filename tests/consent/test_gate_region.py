"""The region recorded with every ledger entry is a region code, never a MAC or escape codes.

The gate wrote whatever region it was given into the ledger (plaintext on disk) and from there
into ``wking consent history`` and the receipts: a MAC-shaped region (``AA-BB-CC-DD-EE-FF``
passes the settings' pattern) put a MAC on disk in plaintext (consent review).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wking_device.config import Settings, resolve_paths
from wking_device.consent import ConsentGate, Ledger, ledger_path
from wking_device.errors import ConfigError, UsageError

KEY = b"r" * 32
_CLI = "from wking_device.cli import main; main()"

_HOSTILE = [
    "AA-BB-CC-DD-EE-FF",
    "AA:BB:CC:DD:EE:FF",
    "A0B1C2D3E4F5",
    "\x1b[31mEU",
    "[bold]EU[/bold]",
    "EU\n",
    "",
]


@pytest.mark.parametrize("region", _HOSTILE)
def test_the_gate_refuses_a_region_that_is_not_a_region_code(tmp_path: Path, region: str) -> None:
    ledger = Ledger(tmp_path / "consent" / "ledger.jsonl", KEY)
    with pytest.raises(UsageError) as info:
        ConsentGate(ledger, region=region, do_not_track=True)  # would record dnt_on
    assert "\n" not in str(info.value)
    assert "BB" not in str(info.value)  # the refused value is not repeated (it may be a MAC)
    assert not ledger.path.exists()


def test_the_gate_refuses_a_region_that_is_not_text(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        ConsentGate(Ledger(tmp_path / "ledger.jsonl", KEY), region=49)  # type: ignore[arg-type]


def test_settings_refuse_a_mac_shaped_region() -> None:
    with pytest.raises(ConfigError, match="region"):
        Settings(region="AA-BB-CC-DD-EE-FF")


def test_a_mac_shaped_region_in_the_environment_never_reaches_the_ledger() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _CLI, "consent", "grant", "--yes", "device_info"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "WKING_REGION": "AA-BB-CC-DD-EE-FF"},
    )
    assert result.returncode != 0
    assert "AA-BB-CC-DD-EE-FF" not in result.stdout + result.stderr
    ledger = ledger_path(resolve_paths())
    assert not ledger.exists() or b"AA-BB" not in ledger.read_bytes()
