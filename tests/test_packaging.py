"""The supported Python range is said once and agreed on by the classifiers, mypy and CI."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _ci_range() -> tuple[str, str]:
    text = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    oldest = re.search(r"^OLDEST=(\d+\.\d+)$", text, re.MULTILINE)
    newest = re.search(r"^NEWEST=(\d+\.\d+)$", text, re.MULTILINE)
    assert oldest, ".ci/run must name OLDEST"
    assert newest, ".ci/run must name NEWEST"
    return oldest.group(1), newest.group(1)


def _minor(version: str) -> int:
    return int(version.split(".")[1])


def test_classifiers_list_exactly_the_versions_ci_runs_between() -> None:
    project = _pyproject()["project"]
    listed = sorted(
        _minor(c.rsplit("::", 1)[1].strip())
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    oldest, newest = _ci_range()
    assert listed == list(range(_minor(oldest), _minor(newest) + 1))
    assert project["requires-python"] == f">={oldest}"


def test_mypy_checks_against_the_oldest_supported_version() -> None:
    oldest, _ = _ci_range()
    assert _pyproject()["tool"]["mypy"]["python_version"] == oldest
    assert _pyproject()["tool"]["ruff"]["target-version"] == "py" + oldest.replace(".", "")


def test_this_interpreter_is_in_the_supported_range() -> None:
    oldest, newest = _ci_range()
    assert _minor(oldest) <= sys.version_info[1] <= _minor(newest), sys.version
