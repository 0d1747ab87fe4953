"""Do Not Track from every source, bounded settings, and misspelled variables (issue 7).

Any source that says Do Not Track is on wins, whatever its spelling; a source that says off never
switches off what another says on; a malformed value in any source is a ConfigError naming it.
"""

from __future__ import annotations

import itertools
import logging
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wking_device.config import load_settings, resolve_paths
from wking_device.errors import ConfigError

_ON = ["1", "yes", "true", "on", "TRUE", "Yes", " on ", "\ttrue\n", "ON", "y", "T"]
_OFF = ["0", "no", "false", "off", "FALSE", " Off ", "N", "f"]
_BAD = ["perhaps", "2", "-1", "onn", "yes please", "1.0"]
_FILE_ON: list[object] = [True, 1, *_ON]
_FILE_OFF: list[object] = [False, 0, *_OFF]
_SOURCES = ("file", "DO_NOT_TRACK", "WKING_DO_NOT_TRACK", "do_not_track", "wking_do_not_track")


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n") + '"'


def _configure(
    home: Path, monkeypatch: pytest.MonkeyPatch, values: dict[str, object | None]
) -> None:
    paths = resolve_paths(home)
    paths.ensure()
    file_value = values.get("file")
    text = "" if file_value is None else f"do_not_track = {_toml(file_value)}\n"
    paths.config_file.write_text(text, encoding="utf-8")
    for source in _SOURCES[1:]:
        value = values.get(source)
        if value is None:
            monkeypatch.delenv(source, raising=False)
        else:
            monkeypatch.setenv(source, str(value))


@pytest.mark.parametrize(("on_source", "off_source"), list(itertools.permutations(_SOURCES, 2)))
@pytest.mark.parametrize("on", ["1", "yes", "true", "on", " On "])
@pytest.mark.parametrize("off", ["0", "false", "no", "off"])
def test_a_source_saying_on_wins_over_one_saying_off(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    on_source: str,
    off_source: str,
    on: str,
    off: str,
) -> None:
    _configure(home, monkeypatch, {on_source: on, off_source: off})
    assert load_settings().do_not_track is True


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    choice=st.fixed_dictionaries(
        {
            source: st.one_of(
                st.none(),
                st.sampled_from(_FILE_ON + _FILE_OFF if source == "file" else _ON + _OFF),
            )
            for source in _SOURCES
        }
    )
)
def test_do_not_track_is_on_exactly_when_some_source_says_so(
    home: Path, monkeypatch: pytest.MonkeyPatch, choice: dict[str, object | None]
) -> None:
    _configure(home, monkeypatch, choice)
    wanted = any(value in _FILE_ON for value in choice.values() if value is not None)
    assert load_settings().do_not_track is wanted


@pytest.mark.parametrize("source", _SOURCES)
@pytest.mark.parametrize("bad", _BAD)
def test_a_malformed_value_in_any_source_names_it_even_when_another_says_on(
    home: Path, monkeypatch: pytest.MonkeyPatch, source: str, bad: str
) -> None:
    other = "DO_NOT_TRACK" if source != "DO_NOT_TRACK" else "file"
    _configure(home, monkeypatch, {source: bad, other: "1"})
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    if source == "file":
        assert info.value.file == str(resolve_paths(home).config_file)
        assert info.value.line == 1
    else:
        assert source in message
    assert info.value.key == "do_not_track"


def test_a_malformed_toml_type_for_do_not_track_is_an_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = resolve_paths(home)
    paths.ensure()
    paths.config_file.write_text("do_not_track = [1]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.line == 1


# --- bounded settings -------------------------------------------------------------------------

_NUMERIC = [
    ("ble", "scan_timeout"),
    ("ble", "connect_timeout"),
    ("ble", "command_timeout"),
    ("ble", "max_connections"),
    ("ble", "connect_attempts"),
    ("storage", "max_bytes"),
    ("storage", "dek_rotation_days"),
    ("upload", "batch_size"),
    ("upload", "interval"),
    (None, "simulate"),
]


@pytest.mark.parametrize(("section", "key"), _NUMERIC)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-1", "1e300"])
def test_numeric_settings_refuse_infinite_negative_and_absurd_values(
    home: Path, section: str | None, key: str, value: str
) -> None:
    paths = resolve_paths(home)
    paths.ensure()
    header = f"[{section}]\n" if section else ""
    paths.config_file.write_text(f"{header}{key} = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == (f"{section}.{key}" if section else key)


@pytest.mark.parametrize("value", ["inf", "nan", "Infinity", "-5", "1e12"])
def test_numeric_variables_refuse_infinite_and_absurd_values(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("WKING_BLE__SCAN_TIMEOUT", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "WKING_BLE__SCAN_TIMEOUT" in str(info.value)


def test_sensible_values_are_still_accepted(home: Path) -> None:
    paths = resolve_paths(home)
    paths.ensure()
    paths.config_file.write_text(
        "[ble]\nscan_timeout = 30.0\nconnect_timeout = 20\n[upload]\ninterval = 600\n",
        encoding="utf-8",
    )
    loaded = load_settings()
    assert math.isclose(loaded.ble.scan_timeout, 30.0)
    assert math.isclose(loaded.upload.interval, 600.0)


# --- misspelled variables ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typo", "meant"),
    [
        ("WKING_SIMULAT", "WKING_SIMULATE"),
        ("WKING_BLE_SCAN_TIMEOUT", "WKING_BLE__SCAN_TIMEOUT"),
        ("WKING_DO_NOT_TRAK", "WKING_DO_NOT_TRACK"),
        ("WKING_HOMEDIR", "WKING_HOME"),
    ],
)
def test_a_misspelled_variable_is_warned_about_once_naming_the_closest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, typo: str, meant: str
) -> None:
    monkeypatch.setenv(typo, "1")
    with caplog.at_level(logging.WARNING, logger="wking_device.config"):
        load_settings()
        load_settings()
    warnings = [r.getMessage() for r in caplog.records if typo in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert meant in warnings[0]
    assert "\n" not in warnings[0]


def test_known_variables_are_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name, value in {
        "WKING_SIMULATE": "2",
        "WKING_BLE__SCAN_TIMEOUT": "3",
        "WKING_DO_NOT_TRACK": "0",
        "WKING_REGION": "US",
    }.items():
        monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="wking_device.config"):
        load_settings()
    assert not [r for r in caplog.records if r.name == "wking_device.config"]


@pytest.mark.parametrize("variable", ["DO_NOT_TRACK", "WKING_DO_NOT_TRACK", "do_not_track"])
def test_settings_built_directly_honour_every_do_not_track_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    from wking_device.config import Settings  # noqa: PLC0415

    monkeypatch.setenv(variable, " Yes ")
    assert Settings().do_not_track is True
    assert Settings(do_not_track=False).do_not_track is True
    monkeypatch.setenv(variable, "0")
    assert Settings(do_not_track=True).do_not_track is True
    assert Settings().do_not_track is False
