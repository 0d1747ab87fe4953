"""A permit another process withdrew stores nothing once the withdrawal returned (consent review).

Real parts: the ``wking`` CLI in a subprocess records the withdrawal while this process holds the
store and a gate that has not re-read the ledger (``watch=None``: only ``refresh()``; the default
rate limit leaves the same gap for up to ``WATCH_INTERVAL`` seconds). The store watches the
ledger itself, so the stale permit must not let a record in after the CLI returned.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from wking_device.cli import cli
from wking_device.collect import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.consent import ConsentGate, ledger_path
from wking_device.errors import ConsentError
from wking_device.models import Record
from wking_device.store import open_store


def _python(
    code: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _wking(*args: str) -> subprocess.CompletedProcess[str]:
    return _python("from wking_device.cli import main; main()", *args)


_LIBRARY = """
from wking_device.collect import open_installation_gate
from wking_device.config import load_settings, resolve_paths
paths = resolve_paths()
gate = open_installation_gate(paths, load_settings(paths))
{action}
"""

# What another process does, each returning before this process's gate re-read the ledger.
_ELSEWHERE = {
    "cli-withdraw": lambda: _wking("consent", "withdraw", "--yes", "operation_logs"),
    "library-withdraw": lambda: _python(
        _LIBRARY.format(action="gate.withdraw(['operation_logs'])")
    ),
    "do-not-track-on": lambda: _python(_LIBRARY.format(action=""), env={"DO_NOT_TRACK": "1"}),
    "ledger-tampered": lambda: _python(
        "import sys; open(sys.argv[1], 'ab').write(b'{}\\n')", str(ledger_path(resolve_paths()))
    ),
}
_SHREDS = {"cli-withdraw", "library-withdraw"}


def _kept(category: str) -> int:
    result = _wking("--json", "data", "status")
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["records"]["by_category"].get(category, 0))


def _record(gate_permit_consent: str) -> Record:
    return Record(
        category="operation_logs",
        consent_id=gate_permit_consent,
        policy_version="1",
        body={"kind": "scan"},
    )


@pytest.mark.parametrize("elsewhere", sorted(_ELSEWHERE))
async def test_a_stale_permit_stores_nothing_once_another_process_stopped_consent(
    elsewhere: str,
) -> None:
    granted = CliRunner().invoke(cli, ["consent", "grant", "--yes", "operation_logs"])
    assert granted.exit_code == 0, granted.output
    paths = resolve_paths()
    settings = load_settings(paths)
    gate = ConsentGate(open_installation_gate(paths, settings).ledger, watch=None)
    permit = gate.permit(["operation_logs"])
    consent_id = permit.consent_ids["operation_logs"]
    async with open_store(paths, settings) as store:
        await store.append([_record(consent_id)], permit)
        withdrawn = await asyncio.to_thread(_ELSEWHERE[elsewhere])
        assert withdrawn.returncode == 0, withdrawn.stderr
        with pytest.raises(ConsentError):
            await store.append([_record(consent_id)], permit)
    assert permit.valid  # the gate never re-read the ledger: only the store can refuse
    kept = 0 if elsewhere in _SHREDS else 1  # Do Not Track and tampering shred nothing
    assert _kept("operation_logs") == kept
