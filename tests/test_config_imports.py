"""Loading the configuration stays light (issue 11): no asyncio, ssl, argparse or email at start-up.

A fresh interpreter (the process boundary is what is measured: which modules one command loads)
reads a config file with every section and a ``WKING_*`` override, then lists what it imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_LOAD = """
import json, sys
from wking_device.config import load_settings
settings = load_settings()
assert settings.ble.scan_timeout == 3.0 and settings.upload.batch_size == 10, settings
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after_loading(home: Path) -> set[str]:
    config = home / "config"
    config.mkdir(parents=True)
    config.joinpath("config.toml").write_text(
        'region = "US"\n[ble]\nscan_timeout = 2.0\n[storage]\ndek_rotation_days = 7\n'
        '[upload]\nendpoint = "https://collector.example"\nbatch_size = 10\n',
        encoding="utf-8",
    )
    env = {**os.environ, "WKING_HOME": str(home), "WKING_BLE__SCAN_TIMEOUT": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


@pytest.fixture(name="modules", scope="module")
def fixture_modules(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    return _modules_after_loading(tmp_path_factory.mktemp("light") / "home")


@pytest.mark.parametrize(
    "heavy",
    [
        "asyncio",
        "ssl",
        "argparse",
        "dotenv",
        "pydantic_settings",
        # pydantic looks for plugins through importlib.metadata (which imports email) on the
        # first model it defines or validates: the settings are attrs classes, not pydantic
        # models, so neither pydantic nor email loads with them
        "email",
        "importlib.metadata",
        "pydantic",
        "pydantic_core",
    ],
)
def test_loading_the_configuration_does_not_import(modules: set[str], heavy: str) -> None:
    assert heavy not in modules
