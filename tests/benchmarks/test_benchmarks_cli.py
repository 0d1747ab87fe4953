"""``python -m benchmarks``: the JSON shape and ``ok`` computed from the budgets (not speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "name",
    "value",
    "unit",
    "baseline",
    "baseline_value",
    "baseline_values",
    "ratio",
    "budget",
    "better",
    "ok",
    "cpu_us_per_item",
    "detail",
}


def test_quick_json_codec_startup() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", "codec", "startup"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    names = {entry["name"] for entry in results}
    assert {"codec.frames", "startup.import", "startup.help"} <= names
    for entry in results:
        assert set(entry) >= KEYS, entry
        assert isinstance(entry["value"], float)
        assert entry["value"] > 0
        assert len(entry["baseline_values"]) == 2  # paired: before and after
        mean = sum(entry["baseline_values"]) / 2
        assert abs(entry["baseline_value"] - mean) <= 1e-9 * mean
        assert (
            abs(entry["ratio"] - entry["value"] / entry["baseline_value"]) <= 1e-9 * entry["ratio"]
        )
        if entry["budget"] is None:
            assert entry["ok"] is None
        elif entry["better"] == "higher":
            assert entry["ok"] is (entry["ratio"] >= entry["budget"])
        else:
            assert entry["ok"] is (entry["ratio"] <= entry["budget"])
    budgets = {entry["name"]: entry["budget"] for entry in results}
    assert budgets["startup.import"] == 8.0
    assert budgets["startup.help"] == 10.0


def test_check_fails_only_far_from_budget() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.__main__ import far_off, finish  # noqa: PLC0415
    finally:
        sys.path.remove(str(ROOT))

    def entry(value: float, better: str, budget: float | None) -> dict[str, object]:
        return finish(
            {
                "name": "x",
                "value": value,
                "unit": "u",
                "baseline": "b",
                "better": better,
                "baseline_values": [1.0, 1.0],
                "budget": budget,
            }
        )

    assert entry(3.0, "higher", 3.0)["ok"] is True
    missed = entry(2.0, "higher", 3.0)
    assert missed["ok"] is False
    assert not far_off(missed)
    assert far_off(entry(1.4, "higher", 3.0))
    assert not far_off(entry(19.0, "lower", 10.0))
    assert far_off(entry(21.0, "lower", 10.0))
    assert entry(5.0, "lower", None)["ok"] is None
    assert not far_off(entry(99.0, "lower", None))


def test_check_measures_a_far_off_figure_once_more_before_it_fails() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.__main__ import far_off, measure  # noqa: PLC0415
    finally:
        sys.path.remove(str(ROOT))

    def bench(*values: float) -> tuple[list[int], object]:
        calls: list[int] = []

        def run(*, quick: bool) -> list[dict[str, object]]:
            assert quick
            value = values[min(len(calls), len(values) - 1)]
            calls.append(1)
            return [
                {"name": "x", "value": value, "unit": "u", "baseline": "b",
                 "baseline_values": [1.0, 1.0], "budget": 0.5, "detail": "d"},
                {"name": "y", "value": 1.0, "unit": "u", "baseline": "b",
                 "baseline_values": [1.0, 1.0], "budget": 0.5},
            ]  # fmt: skip

        return calls, run

    calls, run = bench(0.2, 0.4)  # a moment of load: far off, then only below budget
    figures = measure(run, quick=True, check=True)  # type: ignore[arg-type]
    assert len(calls) == 2
    assert [entry["ratio"] for entry in figures] == [0.4, 1.0]
    assert not any(far_off(entry) for entry in figures)
    assert figures[0]["detail"] == "d; first run's ratio 0.2, measured again"
    assert figures[1]["detail"] == ""
    calls, run = bench(0.2, 0.2)  # a regression: far off both times, the check fails
    assert far_off(measure(run, quick=True, check=True)[0])  # type: ignore[arg-type]
    assert len(calls) == 2
    calls, run = bench(0.2)  # without --check: measured once, reported as it is
    assert far_off(measure(run, quick=True, check=False)[0])  # type: ignore[arg-type]
    assert len(calls) == 1
    calls, run = bench(0.3)  # within the far line: never measured again
    measure(run, quick=True, check=True)  # type: ignore[arg-type]
    assert len(calls) == 1


def test_unknown_name_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown benchmark nope" in proc.stderr


def test_footprint_measures_the_agent_after_its_warm_up_and_uploads() -> None:
    # the footprint benchmark in small: 2 speakers, a cycle a second, 1.5 s after a 1 s
    # warm-up; the baseline (the world, raw bleak scanning and reading) and the agent uploading
    # to the reference receiver, at once
    from benchmarks.__main__ import BENCHMARKS  # noqa: PLC0415
    from benchmarks.footprint import measure  # noqa: PLC0415

    m = measure(speakers=2, seconds=1.5, interval=1.0, warmup=1.0, concurrent=True)
    bleak, agent = m["bleak"], m["agent"]
    for row in (bleak, agent):
        assert 1.4 <= row["wall_s"] <= 5.0  # the measured window, not the whole run
        assert row["cpu_s"] > 0
        assert row["rss_peak_mb"] > 20
        assert row["cycles"] >= 2
        assert row["reads_ok"] >= 2  # both speakers read at least once
    assert agent["rss_peak_mb"] > bleak["rss_peak_mb"]  # the agent is in the world's process
    assert sum(agent["records"].values()) > 0
    assert agent["uploaded"] > 0  # the uploader ran against the receiver over TLS
    assert "footprint" in BENCHMARKS
