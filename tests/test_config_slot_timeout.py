"""``ble.slot_timeout``: validated like the other BLE durations, from code, the file and variables.

Its default is what ``Speaker`` uses; a negative, boolean, non-number, infinite or absurd value
is refused with a :class:`ConfigError` naming ``ble.slot_timeout`` (and the file's line or the
variable); the ``config init`` template and docs/cli.md show it at its default.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from wking_device._configfile import TEMPLATE
from wking_device.config import BleSettings, Settings, load_settings, resolve_paths
from wking_device.errors import ConfigError

_KEY = "ble.slot_timeout"


def test_the_default_is_sixty_seconds_and_a_number_given_as_text_is_read() -> None:
    assert math.isclose(BleSettings().slot_timeout, 60.0)
    assert math.isclose(BleSettings(slot_timeout="2.5").slot_timeout, 2.5)  # type: ignore[arg-type]
    assert math.isclose(Settings(ble={"slot_timeout": 7}).ble.slot_timeout, 7.0)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (-1.0, "greater than 0"),
        (0, "greater than 0"),
        (True, "valid number"),
        (False, "valid number"),
        ("soon", "unable to parse string"),
        ([60], "valid number"),
        (None, "valid number"),
        (float("inf"), "finite"),
        (float("nan"), "finite"),
        (3601, "less than or equal to 3600"),
    ],
)
def test_a_bad_value_in_code_is_refused_naming_the_dotted_key(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        BleSettings(slot_timeout=value)  # type: ignore[arg-type]
    assert info.value.key == _KEY
    assert fragment in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("slot_timeout = -5", "greater than 0"),
        ("slot_timeout = true", "valid number"),
        ('slot_timeout = "soon"', "unable to parse string"),
        ("slot_timeout = nan", "finite"),
    ],
)
def test_a_bad_value_in_the_file_names_the_file_line_and_key(
    home: Path, text: str, fragment: str
) -> None:
    paths = resolve_paths(home)
    paths.ensure()
    paths.config_file.write_text(f"[ble]\n{text}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == _KEY
    assert info.value.file == str(paths.config_file)
    assert info.value.line == 2
    assert fragment in str(info.value)


def test_the_file_and_the_variable_set_it(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = resolve_paths(home)
    paths.ensure()
    paths.config_file.write_text("[ble]\nslot_timeout = 120\n", encoding="utf-8")
    assert math.isclose(load_settings().ble.slot_timeout, 120.0)
    monkeypatch.setenv("WKING_BLE__SLOT_TIMEOUT", "15")
    assert math.isclose(load_settings().ble.slot_timeout, 15.0)  # the variable wins


@pytest.mark.parametrize("value", ["-1", "true", "soon", "inf"])
def test_a_bad_variable_is_refused_naming_it(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("WKING_BLE__SLOT_TIMEOUT", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == _KEY
    assert "WKING_BLE__SLOT_TIMEOUT" in str(info.value)


def test_the_template_and_the_cli_docs_show_the_default() -> None:
    assert "# slot_timeout = 60.0" in TEMPLATE
    docs = (Path(__file__).parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "slot_timeout = 60.0" in docs
