"""Every example runs against the simulator by default and says what it should."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("discover.py", "W-KING X10 0002"),
        ("read_info.py", "manufacturer  W-KING"),
        ("control.py", "volume 45, eq BASS_BOOST, light RAINBOW"),
        ("test_rig.py", "ConnectionFailed"),
    ],
)
def test_example_runs_on_the_simulator(script: str, expected: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=EXAMPLES,
    )
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout
