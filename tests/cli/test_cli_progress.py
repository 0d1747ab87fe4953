"""Progress on long work: a spinner on a terminal's stderr, nothing in a pipe or with --json.

Real processes: stderr is a pseudo-terminal (``pty``) or a pipe, as a user or a script has it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pty = pytest.importorskip("pty")

WKING = str(Path(sys.executable).with_name("wking"))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("progress") / "home"
    env = {**os.environ, "WKING_HOME": str(home), "TERM": "xterm"}
    for args in (
        ["consent", "grant", "--yes", "operation_logs"],
        ["--simulate", "1", "agent", "run", "--cycles", "1", "--interval", "0.2"],
    ):
        subprocess.run([WKING, *args], env=env, capture_output=True, check=True)
    return env


def _stderr_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [WKING, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    proc.communicate(timeout=60)
    return proc.returncode, seen


def test_data_export_shows_a_spinner_on_a_terminal(env: dict[str, str], tmp_path: Path) -> None:
    code, seen = _stderr_on_a_terminal(["data", "export", "--out", str(tmp_path / "x")], env)
    assert code == 0
    assert b"Decrypting the records kept here" in seen
    assert b"wrote " in seen


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_data_export_shows_nothing_in_a_pipe(
    env: dict[str, str], tmp_path: Path, json_flag: list[str]
) -> None:
    proc = subprocess.run(
        [WKING, *json_flag, "data", "export", "--out", str(tmp_path / "x")],
        env=env,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"Decrypting" not in proc.stderr
    assert b"\x1b" not in proc.stderr


def test_data_export_with_json_shows_nothing_on_a_terminal(
    env: dict[str, str], tmp_path: Path
) -> None:
    code, seen = _stderr_on_a_terminal(
        ["--json", "data", "export", "--out", str(tmp_path / "x")], env
    )
    assert code == 0
    assert b"Decrypting" not in seen
