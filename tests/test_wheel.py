"""What users install is what is tested: the wheel and sdist hold what they must, and only that.

``python -m build`` makes both from this tree (without isolation: the build backend comes from
the dev extra, so this runs offline); ``twine check`` accepts them. .ci/run goes further and
installs the wheel into a fresh venv.
"""

from __future__ import annotations

import email.parser
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "wking_device"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("*.whl")
    return wheel


def _sdist(dist: Path) -> Path:
    (sdist,) = dist.glob("*.tar.gz")
    return sdist


def test_twine_accepts_both(dist: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, sorted(dist.iterdir()))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_wheel_holds_every_package_file_and_its_data(dist: Path) -> None:
    names = set(zipfile.ZipFile(_wheel(dist)).namelist())
    expected = {
        "wking_device/" + path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected <= names, sorted(expected - names)
    for data in (
        "wking_device/py.typed",
        "wking_device/policy/documents/index.toml",
        "wking_device/policy/documents/1.0.md",
        "wking_device/policy/documents/1.1.md",
    ):
        assert data in names, data


def test_wheel_holds_no_junk(dist: Path) -> None:
    names = zipfile.ZipFile(_wheel(dist)).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"wking_device", f"{_wheel(dist).name.split('-py3')[0]}.dist-info"}
    for name in names:
        assert "__pycache__" not in name, name
        assert not name.endswith((".pyc", ".pyo")), name
        assert ".venv" not in name, name
        assert not name.startswith(("tests/", "docs/", "benchmarks/")), name


def test_wheel_metadata_names_the_license_the_entry_points_and_extras(dist: Path) -> None:
    wheel = zipfile.ZipFile(_wheel(dist))
    info = _wheel(dist).name.split("-py3")[0] + ".dist-info"
    metadata = email.parser.Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
    assert metadata["License-Expression"] == "MIT"
    assert metadata["License-File"] == "LICENSE"
    assert wheel.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    assert metadata["Requires-Python"] == ">=3.11"
    assert "sim" in metadata.get_all("Provides-Extra")
    entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert "wking = wking_device.cli:main" in entry_points
    assert "wking_sim = wking_device.sim.pytest_plugin" in entry_points


def test_sdist_holds_what_a_packager_needs_and_no_junk(dist: Path) -> None:
    with tarfile.open(_sdist(dist)) as sdist:
        names = [name.split("/", 1)[1] for name in sdist.getnames() if "/" in name]
    for needed in (
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "pyproject.toml",
        "PKG-INFO",
        "src/wking_device/py.typed",
        "src/wking_device/policy/documents/index.toml",
        "docs/cli.md",
        "docs/deploy.md",
        "examples/systemd/wking-agent.service",
        "tests/conftest.py",
    ):
        assert needed in names, needed
    for name in names:
        assert not name.startswith((".venv", ".git/", "dist/", ".ci/")), name
        assert "__pycache__" not in name, name
        assert not name.endswith(".pyc"), name


def test_ci_runs_the_readme_command_first_then_the_installed_wheel() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    test_command = next(
        line.strip()
        for line in readme.splitlines()
        if "pip install" in line and " -m pytest" in line
    )
    commands = [
        line for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    first = next(line for line in commands if "pip install" in line)
    assert first == test_command  # verbatim, and the first install
    wheel_section = ci.split("the wheel, installed into a fresh venv", 1)[1]
    assert "-m build" in wheel_section
    assert 'pip" install -q "$wheel[sim]"' in wheel_section  # the wheel, not `-e .`
    assert "install -e" not in wheel_section
    for run in ('wking" --version', 'wking" --simulate 2 scan', "--json info"):
        assert run in wheel_section, run
