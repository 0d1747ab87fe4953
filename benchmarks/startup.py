"""Start-up benchmark: ``import wking_device``, ``wking --help``, ``wking consent status``.

Each is a fresh interpreter (a real subprocess, wall time to exit), interleaved round by round
with the named baseline ``python -c pass`` (the same interpreter's own start-up), so a busy
machine slows both alike; the medians are compared. Budgets (issue 11): ``import wking_device``
≤ 8x and ``wking --help`` ≤ 10x ``python -c pass``. ``wking consent status`` runs against an
empty temporary home (a command that only reports creates nothing) and is reported only.

    .venv/bin/python benchmarks/startup.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

CASES: list[tuple[str, list[str], float | None]] = [
    ("startup.import", ["-c", "import wking_device"], 8.0),
    ("startup.help", ["-m", "wking_device", "--help"], 10.0),
    ("startup.consent_status", ["-m", "wking_device", "consent", "status"], None),
]
BASELINE = ["-c", "pass"]


def _time(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(  # noqa: PLW1510 - the exit status is checked below
        [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ).check_returncode()
    return time.perf_counter() - started


def run(quick: bool = False) -> list[dict[str, Any]]:
    rounds = 5 if quick else 15
    with tempfile.TemporaryDirectory(prefix="wking-startup-") as home:
        env = {**os.environ, "WKING_HOME": home, "NO_COLOR": "1"}
        times: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
        before: list[float] = []
        after: list[float] = []
        _time(BASELINE, env)
        for name, args, _ in CASES:
            _time(args, env)  # warm the page cache and .pyc files
            times[name] = []
        for _ in range(rounds):
            for name, args, _ in CASES:
                before.append(_time(BASELINE, env))
                times[name].append(_time(args, env))
                after.append(_time(BASELINE, env))
    base_before, base_after = statistics.median(before), statistics.median(after)
    return [
        {
            "name": name,
            "value": statistics.median(times[name]) * 1000,
            "unit": "ms",
            "better": "lower",
            "baseline": "python -c pass",
            "baseline_values": [base_before * 1000, base_after * 1000],
            "budget": budget,
            "detail": f"python {' '.join(args)}: median of {rounds}",
        }
        for name, args, budget in CASES
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    for entry in run(parser.parse_args().quick):
        print(entry)
