"""Shared fixtures: every test runs in its own WKING_HOME with a clean environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hardware",
        action="store_true",
        default=False,
        help="also run the tests marked hardware (tests/hardware, and tests/conformance against "
        "a real adapter): a real Bluetooth adapter and a W-KING speaker nearby",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--hardware"):
        return
    skip = pytest.mark.skip(reason="needs a real adapter and speaker: run with --hardware")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Give every test a fresh home and no WKING_*/DO_NOT_TRACK variables from the caller."""
    for name in list(os.environ):
        if name.startswith("WKING_") or name == "DO_NOT_TRACK":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WKING_HOME", str(tmp_path / "home"))


@pytest.fixture(name="home")
def fixture_home(tmp_path: Path) -> Path:
    """The test's WKING_HOME directory."""
    return tmp_path / "home"
