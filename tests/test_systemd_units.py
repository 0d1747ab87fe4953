"""The example systemd units (examples/systemd/) say what docs/deploy.md and the key store expect.

Read line by line here (every key of the system unit is checked against what the agent needs),
and, where ``systemd-analyze`` exists, verified by systemd itself: no unknown key, no bad value,
and a low exposure score for the hardened system unit.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wking_device.cli._agent import GRACE_S, HARD_S
from wking_device.crypto import CREDENTIAL_NAME

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "examples" / "systemd"
SYSTEM = UNITS / "wking-agent.service"
USER = UNITS / "wking-agent.user.service"
WKING = str(Path(sys.executable).with_name("wking"))
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


def _parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file: key -> every value given (systemd allows repeated keys)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            current = sections.setdefault(header.group(1), {})
            continue
        match = re.fullmatch(r"([A-Za-z]+)=(.*)", line)
        assert match, f"{path.name}:{number}: not a key: {line!r}"
        assert current is not None, f"{path.name}:{number}: a key before any section"
        current.setdefault(match.group(1), []).append(match.group(2))
    return sections


def _one(section: dict[str, list[str]], key: str) -> str:
    values = section[key]
    assert len(values) == 1, (key, values)
    return values[0]


def test_system_unit_is_a_hardened_notify_service_of_its_own_user() -> None:
    unit = _parse(SYSTEM)
    assert set(unit) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    assert _one(service, "Type") == "notify"
    assert int(_one(service, "WatchdogSec")) > 0
    assert _one(service, "Restart") == "on-failure"
    assert _one(service, "ExecStart").endswith("/wking agent run")
    assert _one(service, "User") == "wking"
    assert _one(service, "SupplementaryGroups") == "bluetooth"
    assert _one(service, "StateDirectory") == "wking"
    assert _one(service, "Environment") == "WKING_HOME=%S/wking"
    # the credential the key store's systemd-credential level reads
    assert _one(service, "LoadCredentialEncrypted").split(":")[0] == CREDENTIAL_NAME
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "UMask": "0077",
    }.items():
        assert _one(service, key) == value, key
    assert set(_one(service, "RestrictAddressFamilies").split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
    }
    # SIGTERM: the agent's own stop deadline fits in systemd's
    assert int(_one(service, "TimeoutStopSec")) > GRACE_S + HARD_S
    assert _one(unit["Install"], "WantedBy") == "multi-user.target"


def test_user_unit_uses_the_users_own_installation() -> None:
    unit = _parse(USER)
    service = unit["Service"]
    assert _one(service, "Type") == "notify"
    assert "Environment" not in service  # the same home as the user's `wking` commands
    assert "User" not in service
    assert _one(service, "ExecStart") == "%h/.local/bin/wking agent run"
    assert _one(unit["Install"], "WantedBy") == "default.target"


def _installable(unit: Path, directory: Path, old: str) -> Path:
    """A copy whose ExecStart names this venv's wking (verify checks that it is executable)."""
    text = unit.read_text(encoding="utf-8")
    assert old in text
    copy = directory / "wking-agent.service"
    copy.write_text(text.replace(old, WKING), encoding="utf-8")
    return copy


def _verify(args: list[str], unit: Path, env: dict[str, str] | None = None) -> None:
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, *args, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    # an unknown key or a bad value is only a warning (exit 0): any output is a failure
    assert result.returncode == 0, result.stderr
    assert not result.stderr.strip(), result.stderr
    assert not result.stdout.strip(), result.stdout


@needs_analyze
def test_system_unit_verifies(tmp_path: Path) -> None:
    _verify([], _installable(SYSTEM, tmp_path, "/opt/wking/venv/bin/wking"))


@needs_analyze
def test_user_unit_verifies(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)}
    _verify(["--user"], _installable(USER, tmp_path, "%h/.local/bin/wking"), env)


@needs_analyze
def test_verify_catches_an_unknown_key(tmp_path: Path) -> None:
    unit = _installable(SYSTEM, tmp_path, "/opt/wking/venv/bin/wking")
    unit.write_text(unit.read_text().replace("UMask=0077", "UMask=0077\nProtectFoo=yes"))
    with pytest.raises(AssertionError, match="ProtectFoo"):
        _verify([], unit)


@needs_analyze
def test_system_unit_exposure_is_low(tmp_path: Path) -> None:
    assert ANALYZE is not None
    unit = _installable(SYSTEM, tmp_path, "/opt/wking/venv/bin/wking")
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    if "offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0  # systemd rates up to 2.0 "OK"; 1.5 when written
