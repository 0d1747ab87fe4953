"""Shared by the stale-permit tests: a permit whose gate never re-reads the ledger, and
what another process does to the ledger meanwhile (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from click.testing import CliRunner

from wking_device.cli import cli
from wking_device.collect import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.consent import ConsentGate
from wking_device.models import Record

if TYPE_CHECKING:
    from wking_device.config import Paths, Settings
    from wking_device.consent import Permit


def python(
    code: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -c code args`` in a new process (this test's environment, plus ``env``)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def wking(*args: str) -> subprocess.CompletedProcess[str]:
    return python("from wking_device.cli import main; main()", *args)


def kept(category: str) -> int:
    """Records of ``category`` in the store, as ``wking data status`` counts them."""
    result = wking("--json", "data", "status")
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["records"]["by_category"].get(category, 0))


def record(consent_id: str) -> Record:
    return Record(
        category="operation_logs", consent_id=consent_id, policy_version="1", body={"kind": "scan"}
    )


def stale_permit() -> tuple[Paths, Settings, Permit, str]:
    """``operation_logs`` granted (by the CLI), and a permit of a gate that never re-reads
    the ledger (``watch=None``): only the store can notice another process's withdrawal."""
    granted = CliRunner().invoke(cli, ["consent", "grant", "--yes", "operation_logs"])
    assert granted.exit_code == 0, granted.output
    paths = resolve_paths()
    settings = load_settings(paths)
    gate = ConsentGate(open_installation_gate(paths, settings).ledger, watch=None)
    permit = gate.permit(["operation_logs"])
    return paths, settings, permit, permit.consent_ids["operation_logs"]
