"""Every example runs against the simulator by default and says what it should.

The examples are run as a user runs them: ``python examples/<script>.py`` in a subprocess.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(script: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=EXAMPLES,
        stdin=subprocess.DEVNULL,
    )


# Every example script and what it must print when run as is (on simulated speakers).
EXPECTED = {
    "discover.py": "W-KING X10 0002",
    "read_info.py": "manufacturer  W-KING",
    "control.py": "volume 45, eq BASS_BOOST, light RAINBOW",
    "test_rig.py": "ConnectionFailed",
}


# The standalone programs of issue 12 that run as scripts: their arguments and what they must
# print (test_a_standalone_program_runs). consent_app.py asks on a terminal: --yes answers.
STANDALONE_RUNS: dict[str, tuple[tuple[str, ...], str]] = {
    "companion.py": ((), "event: battery 57 %"),
    "consent_app.py": (("--yes",), "after withdrawal: 0 records"),
    "dashboard.py": ((), "records: none (nothing was collected in this installation yet)"),
}
# A pytest module, not a script: run by pytest (test_the_fault_rig_passes_under_pytest...).
RUN_BY_PYTEST = ("test_fault_rig.py",)


def test_every_example_is_run() -> None:
    # a new example (any examples/**/*.py not starting with "_") must be added to EXPECTED,
    # STANDALONE_RUNS or RUN_BY_PYTEST
    scripts = {
        str(path.relative_to(EXAMPLES))
        for path in EXAMPLES.rglob("*.py")
        if not path.name.startswith("_")
    }
    listed = set(EXPECTED) | set(STANDALONE_RUNS) | set(RUN_BY_PYTEST)
    assert scripts == listed, f"not run: {sorted(scripts - listed)}"


@pytest.mark.parametrize(("script", "expected"), sorted(EXPECTED.items()))
def test_example_runs_on_the_simulator(script: str, expected: str) -> None:
    proc = _run(script)
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout
    # nothing on stderr: no warning from bumble's emulated link (issue 7, item 22)
    assert proc.stderr == "", proc.stderr


@pytest.mark.parametrize("count", [4, 7])
def test_the_rig_reads_the_number_of_speakers_asked_for(count: int) -> None:
    proc = _run("test_rig.py", "--speakers", str(count))
    assert proc.returncode == 0, proc.stderr
    assert f" of {count} speakers" in proc.stdout, proc.stdout
    assert proc.stderr == "", proc.stderr


def test_discover_finds_the_number_of_speakers_asked_for() -> None:
    proc = _run("discover.py", "--speakers", "5")
    assert proc.returncode == 0, proc.stderr
    assert "W-KING D8 Mini 0005" in proc.stdout or proc.stdout.count("C0:57:4B") == 5


@pytest.mark.parametrize("count", ["0", "-1", "many"])
def test_a_bad_speaker_count_is_a_usage_error(count: str) -> None:
    proc = _run("test_rig.py", "--speakers", count)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--speakers" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("read_info.py", "C0:57:4B:00:00:09"),  # not in the simulated fleet
        ("control.py", "C0:57:4B:00:00:09"),
        ("read_info.py", "kitchen"),  # not an address
        ("read_info.py", "--real", "C0:57:4B:00:00:09"),  # no adapter on this machine, or absent
        ("discover.py", "--real"),
        ("test_rig.py", "--real"),
    ],
    ids=[
        "unknown-sim",
        "unknown-control",
        "not-an-address",
        "real-unknown",
        "real-scan",
        "real-rig",
    ],
)
def test_a_failure_is_one_clear_line(args: tuple[str, ...]) -> None:
    proc = _run(*args)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if proc.returncode == 0:
        # a machine with an adapter may scan fine with --real; then there is nothing to check
        assert args[-1] == "--real" or "--real" in args, proc.stdout
        return
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert proc.returncode != 0


def test_examples_show_warnings_of_wking_device() -> None:
    # the examples set up logging, so a warning of the library reaches the user; bumble's
    # teardown chatter does not (the simulator routes it to its own debug log)
    script = (
        "import logging, _common\n"
        "_common.setup_logging()\n"
        "logging.getLogger('wking_device.ble').warning('a warning of ours')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=EXAMPLES,
    )
    assert proc.returncode == 0, proc.stderr
    assert "a warning of ours" in proc.stderr


# --- the four programs of issue 12: standalone, run, mypy --strict clean ---------------------

STANDALONE = ("companion.py", "consent_app.py", "dashboard.py", "test_fault_rig.py")


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [(script, args, expected) for script, (args, expected) in sorted(STANDALONE_RUNS.items())],
)
def test_a_standalone_program_runs(script: str, args: tuple[str, ...], expected: str) -> None:
    proc = _run(script, *args)
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout, proc.stdout
    assert proc.stderr == "", proc.stderr


def test_the_dashboard_creates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "untouched"
    proc = _run("dashboard.py", "--home", str(home))
    assert proc.returncode == 0, proc.stderr
    assert not home.exists()


def test_the_fault_rig_passes_under_pytest_with_the_sim_plugin() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *RUN_BY_PYTEST],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=EXAMPLES,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


@pytest.mark.parametrize("script", STANDALONE)
def test_a_standalone_program_imports_no_helper(script: str) -> None:
    text = (EXAMPLES / script).read_text(encoding="utf-8")
    assert "_common" not in text
    assert text.startswith('"""')


def test_the_standalone_programs_are_mypy_strict_clean() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", *STANDALONE],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=EXAMPLES,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_library_guide_snippets_compile_and_import() -> None:
    import ast  # noqa: PLC0415
    import re  # noqa: PLC0415

    guide = (EXAMPLES.parent / "docs" / "library.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.DOTALL)
    assert len(blocks) >= 5
    for block in blocks:
        tree = ast.parse(block)
        imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
        exec(compile(ast.Module(body=imports, type_ignores=[]), "<library.md>", "exec"), {})


# Speaker 1 of the simulated fleet advertises and reports strings a terminal would act on.
_HOSTILE_RUN = """
import json, runpy, sys
from wking_device.sim import SpeakerSpec
original = SpeakerSpec.for_index.__func__
hostile = json.loads(sys.argv[2])
def for_index(cls, index, **overrides):
    if index == 1:
        overrides = {**hostile, **overrides}
    return original(cls, index, **overrides)
SpeakerSpec.for_index = classmethod(for_index)
script = sys.argv[1]
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
"""
_HOSTILE = {
    "name": "W\x1b]0;T\x07\x1b[2J\u202eB\x9b",
    "firmware": "1\x1b[31m\u2066\x00\r\nerror: forged line",
}
# what a terminal acts on: C0 controls but newline, DEL, C1, bidirectional and format characters
_RAW = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)


@pytest.mark.parametrize("script", ["discover.py", "read_info.py", "companion.py"])
def test_strings_from_speakers_are_escaped(script: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _HOSTILE_RUN, script, json.dumps(_HOSTILE)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=EXAMPLES,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert not _RAW.findall(proc.stdout), repr(proc.stdout)
    assert "\\x1b" in proc.stdout  # shown, escaped: the user still sees what the speaker sent
    assert "\nerror: forged line" not in proc.stdout
