"""Simulated speakers keep their state between ``wking --simulate`` processes (issue 7, item 20).

Every test runs the installed ``wking`` script in subprocesses: the state must survive the end of
one process and be read by the next, which an in-process runner cannot show.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

WKING = str(Path(sys.executable).with_name("wking"))
ADDRESS = "C0:57:4B:00:00:02"
STATE_FILE = Path("data") / "sim-state.json"


def _wking(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WKING, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
    )


def _info(home: Path, address: str = ADDRESS, count: int = 3) -> dict[str, object]:
    proc = _wking("--home", str(home), "--simulate", str(count), "--json", "info", address)
    assert proc.returncode == 0, proc.stderr
    info: dict[str, object] = json.loads(proc.stdout)
    return info


def _control(home: Path, *action: str, address: str = ADDRESS) -> subprocess.CompletedProcess[str]:
    proc = _wking("--home", str(home), "--simulate", "3", "control", address, *action)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_volume_eq_and_light_survive_the_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    before = _info(home)
    assert before["volume"] == 30
    _control(home, "volume", "40")
    _control(home, "eq", "bass-boost")
    _control(home, "light", "rainbow")
    after = _info(home)
    assert (after["volume"], after["eq"], after["light"]) == (40, "bass_boost", "rainbow")
    # another speaker of the fleet is untouched, and a bigger fleet has the same speaker 2
    assert _info(home, "C0:57:4B:00:00:01")["volume"] == 25  # its fleet default
    assert _info(home, count=5)["volume"] == 40


def test_state_is_per_home(tmp_path: Path) -> None:
    _control(tmp_path / "one", "volume", "55")
    assert _info(tmp_path / "one")["volume"] == 55
    assert _info(tmp_path / "two")["volume"] == 30


def test_read_only_commands_create_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _info(home)
    proc = _wking("--home", str(home), "--simulate", "3", "--json", "scan")
    assert proc.returncode == 0, proc.stderr
    assert not home.exists()


def test_a_read_after_a_change_does_not_rewrite_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _control(home, "volume", "41")
    state = home / STATE_FILE
    stamp = state.stat().st_mtime_ns
    os.utime(state, ns=(stamp - 10**9, stamp - 10**9))
    _info(home)
    assert state.stat().st_mtime_ns == stamp - 10**9


def test_the_state_file_is_private_and_holds_no_mac_address(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _control(home, "volume", "42")
    _control(home, "eq", "rock", address="C0:57:4B:00:00:03")
    state = home / STATE_FILE
    assert state.stat().st_mode & 0o777 == 0o600
    text = state.read_text(encoding="utf-8")
    assert not re.search(r"(?i)[0-9a-f]{2}([:.-]?[0-9a-f]{2}){5}", text), text
    assert not list(state.parent.glob("*.tmp")), "no temporary file left behind"


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe garbage",
        b"[1, 2, 3]",
        b'{"version": 1, "speakers": {"2": {"volume": 400}}}',
        b'{"version": 1, "speakers": {"2": {"volume": true}}}',
        b'{"version": 1, "speakers": {"2": {"eq": "\\u001b]0;owned\\u0007"}}}',
        b'{"version": 1, "speakers": {"-1": {"volume": 10}}}',
        b'{"version": 99, "speakers": {}}',
        b"[" * 100_000,
        b'{"version": 1, "speakers": {"2": {"volume": 10}}, "x": "' + b"a" * 2_000_000 + b'"}',
    ],
    ids=[
        "not-json",
        "not-utf8",
        "not-an-object",
        "volume-out-of-range",
        "bool-volume",
        "escape-sequence",
        "bad-index",
        "unknown-version",
        "deep-nesting",
        "huge",
    ],
)
def test_a_damaged_or_hostile_file_gives_one_line_and_the_defaults(
    tmp_path: Path, content: bytes
) -> None:
    proc, lines = _info_over_a_bad_file(tmp_path / "home", content)
    assert json.loads(proc.stdout)["volume"] == 30
    assert lines[0].startswith("warning: ")
    assert "sim-state.json" in lines[0]
    assert "\x1b" not in proc.stderr
    assert "Traceback" not in proc.stderr


def _info_over_a_bad_file(
    home: Path, content: bytes
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``wking info`` with ``content`` as the state file: the process and its one stderr line."""
    state = home / STATE_FILE
    state.parent.mkdir(parents=True)
    state.write_bytes(content)
    proc = _wking("--home", str(home), "--simulate", "3", "--json", "info", ADDRESS)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return proc, lines


def test_a_fifo_in_place_of_the_file_does_not_hang(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = home / STATE_FILE
    state.parent.mkdir(parents=True)
    os.mkfifo(state)
    proc = _wking("--home", str(home), "--simulate", "3", "--json", "info", ADDRESS, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["volume"] == 30
    assert proc.stderr.startswith("warning: ")


def test_a_change_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = home / STATE_FILE
    state.parent.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    state.symlink_to(victim)
    _control(home, "volume", "44")
    assert victim.read_text(encoding="utf-8") == "keep me"
    assert not state.is_symlink()
    assert _info(home)["volume"] == 44


def test_a_damaged_file_is_replaced_by_the_next_change(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = home / STATE_FILE
    state.parent.mkdir(parents=True)
    state.write_bytes(b"{not json")
    _control(home, "volume", "47")
    proc = _wking("--home", str(home), "--simulate", "3", "--json", "info", ADDRESS)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["volume"] == 47
    assert proc.stderr == ""


def test_power_off_is_not_kept(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _control(home, "volume", "43")
    _control(home, "power-off")
    info = _info(home)  # switched on again, as by its button, with the volume it had
    assert info["volume"] == 43


def test_the_help_and_the_docs_say_so() -> None:
    proc = _wking("--help")
    assert "kept per home" in " ".join(proc.stdout.split())
    root = Path(__file__).parents[2]
    for doc in ("docs/cli.md", "docs/testing.md"):
        assert "sim-state.json" in (root / doc).read_text(encoding="utf-8"), doc


def test_the_warning_escapes_and_redacts_a_hostile_home_path(tmp_path: Path) -> None:
    # the warning quoted the file's path raw: an escape sequence or a line break in the home
    # (the caller's) reached standard error, the journal under systemd, as it was
    home = tmp_path / "h\x1b]0;owned\x07\nerror: forged C0:57:4B:00:00:09"
    proc, lines = _info_over_a_bad_file(home, b"not json")
    assert lines[0].startswith("warning: ignoring ")
    assert "\\x1b]0;owned\\x07\\nerror: forged [MAC]" in lines[0]
    assert "\x1b" not in proc.stderr
    assert "C0:57:4B:00:00:09" not in proc.stderr


def test_the_warning_of_a_state_not_kept_escapes_a_hostile_home_path(tmp_path: Path) -> None:
    home = tmp_path / "h\x1b]0;owned\x07\nerror: forged"
    state = home / STATE_FILE
    (state / "occupied").mkdir(parents=True)  # a directory in its place: not replaced
    proc = _wking("--home", str(home), "--simulate", "3", "control", ADDRESS, "volume", "41")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert any("was not kept in" in line for line in lines), proc.stderr
    assert all(line.startswith("warning: ") for line in lines), proc.stderr
    assert "\x1b" not in proc.stderr
