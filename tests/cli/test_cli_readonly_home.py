"""Commands that only report create nothing, and work on a read-only home (issue 7, 13 and 18).

Each command runs as a real ``wking`` subprocess. The read-only home is a real read-only file
system: a tmpfs mounted, filled with an installation, then remounted read-only (tests run as
root, where a ``chmod`` would not stop anything). Without the privilege to mount, those tests
are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from wking_device.collect import OperationLogCollector, open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import OperationEvent, OperationKind, Outcome
from wking_device.store import open_store

_SIM_ADDRESS_COMMANDS = ("scan",)

READ_ONLY_COMMANDS: list[tuple[str, ...]] = [
    ("consent", "status"),
    ("--json", "consent", "status"),
    ("consent", "history"),
    ("--json", "consent", "history"),
    ("consent", "receipts", "--out", "-"),
    ("policy", "show"),
    ("policy", "versions"),
    ("policy", "diff", "1.0", "1.1"),
    ("data", "status"),
    ("--json", "data", "status"),
    ("data", "export", "--out", "-"),
    ("devices", "list"),
    ("doctor",),
    ("config", "show"),
    ("--simulate", "2", "scan", "--timeout", "0.5"),
]


def _wking(home: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WKING_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-c", "from wking_device.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` with its mode, size and mtime."""
    found: dict[str, tuple[int, int, int]] = {}
    if not root.exists():
        return found
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        found[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return found


@pytest.mark.parametrize("args", READ_ONLY_COMMANDS, ids=" ".join)
def test_a_read_only_command_creates_nothing_in_a_fresh_home(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    home = tmp_path / "fresh"
    home.mkdir()
    result = _wking(home, *args)
    assert result.returncode == 0, result.stderr
    assert _tree(home) == {}, f"{' '.join(args)} created {sorted(_tree(home))}"


@pytest.mark.parametrize("args", READ_ONLY_COMMANDS, ids=" ".join)
def test_a_read_only_command_does_not_create_a_missing_home(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    home = tmp_path / "missing" / "home"
    result = _wking(home, *args)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("value", ["", "   "])
@pytest.mark.parametrize("how", ["option", "variable"])
def test_an_empty_home_is_a_usage_error(tmp_path: Path, value: str, how: str) -> None:
    env = {**os.environ}
    args = ["consent", "status"]
    if how == "option":
        args = ["--home", value, *args]
        env.pop("WKING_HOME", None)
    else:
        env["WKING_HOME"] = value
    result = subprocess.run(
        [sys.executable, "-c", "from wking_device.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "home" in result.stderr.lower()
    assert list(tmp_path.iterdir()) == []  # nothing created in the current directory


# --- a read-only home ---------------------------------------------------------------------------


async def _fill(home: Path) -> None:
    os.environ["WKING_HOME"] = str(home)
    paths = resolve_paths(home)
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    gate.grant(["operation_logs"])
    async with open_store(paths, settings) as store:
        collector = OperationLogCollector(gate, store, adapter_mac="")
        for _ in range(3):
            collector.on_event(OperationEvent(kind=OperationKind.SCAN, outcome=Outcome.OK))
        assert await collector.flush() == 3


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


@pytest.fixture(name="read_only_home")
def fixture_read_only_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a read-only file system")
    mountpoint = tmp_path / f"ro-{uuid.uuid4().hex[:8]}"
    mountpoint.mkdir()
    mounted = _mount("-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(mountpoint))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        home = mountpoint / "home"
        monkeypatch.setenv("WKING_HOME", str(home))
        asyncio.run(_fill(home))
        # the grant above left the installation as the user has it; the home holds a bindings
        # file too, so `devices list` reads something
        assert _wking(home, "consent", "status").returncode == 0
        remount = _mount("-o", "remount,ro", str(mountpoint))
        assert remount.returncode == 0, remount.stderr
        with pytest.raises(OSError):  # really read-only, for root too
            (home / "probe").write_text("x")
        yield home
    finally:
        _mount("-o", "remount,rw", str(mountpoint))
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.mark.parametrize("args", READ_ONLY_COMMANDS, ids=" ".join)
def test_read_only_commands_work_on_a_read_only_home(
    read_only_home: Path, args: tuple[str, ...]
) -> None:
    result = _wking(read_only_home, *args)
    if args == ("doctor",):
        assert result.returncode != 0  # doctor flags the unwritable home ...
        assert "not writable" in result.stdout + result.stderr
        return
    assert result.returncode == 0, result.stderr


def test_read_only_home_still_shows_the_data(read_only_home: Path) -> None:
    status = json.loads(_wking(read_only_home, "--json", "data", "status").stdout)
    assert status["records"]["by_category"] == {"operation_logs": 3}
    consent = json.loads(_wking(read_only_home, "--json", "consent", "status").stdout)
    states = {c["category"]: c["state"] for c in consent["categories"]}
    assert states["operation_logs"] == "granted"
    assert consent["ledger"]["verified"] is True
    doctor = json.loads(_wking(read_only_home, "--json", "doctor").stdout)
    assert doctor["home_writable"] is False


def test_a_write_command_on_a_read_only_home_fails_with_one_clear_line(
    read_only_home: Path,
) -> None:
    result = _wking(read_only_home, "consent", "grant", "--yes", "device_info")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    "args", [("config", "init"), ("config", "set", "region", "US")], ids=" ".join
)
def test_config_writes_fail_in_one_line_on_a_read_only_home(
    read_only_home: Path, args: tuple[str, ...]
) -> None:
    result = _wking(read_only_home, *args)
    assert result.returncode == 6, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot write")
    assert "Traceback" not in result.stderr
