from __future__ import annotations

from pathlib import Path

import pytest

from wking_device.config import load_settings, resolve_paths
from wking_device.errors import ConfigError


def _write(home: Path, text: str) -> Path:
    paths = resolve_paths(home)
    paths.ensure()
    paths.config_file.write_text(text, encoding="utf-8")
    return paths.config_file


def test_home_puts_everything_under_one_directory(home: Path) -> None:
    paths = resolve_paths()
    assert paths.home == home.resolve()
    assert paths.config_dir.is_relative_to(home.resolve())
    assert paths.data_dir.is_relative_to(home.resolve())


def test_explicit_home_beats_environment(tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert resolve_paths(other).data_dir == other.resolve() / "data"


def test_ensure_makes_private_directories(home: Path) -> None:
    paths = resolve_paths()
    paths.ensure()
    assert paths.data_dir.stat().st_mode & 0o777 == 0o700
    assert paths.config_dir.stat().st_mode & 0o777 == 0o700


def test_defaults_without_file() -> None:
    settings = load_settings()
    assert settings.do_not_track is False
    assert settings.ble.max_connections == 5


def test_file_values_are_read(home: Path) -> None:
    _write(home, 'region = "US"\n[ble]\nmax_connections = 7\n')
    settings = load_settings()
    assert settings.region == "US"
    assert settings.ble.max_connections == 7


def test_environment_beats_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(home, "[ble]\nmax_connections = 7\n")
    monkeypatch.setenv("WKING_BLE__MAX_CONNECTIONS", "9")
    assert load_settings().ble.max_connections == 9


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("0", False), ("true", True)])
def test_do_not_track_from_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("DO_NOT_TRACK", value)
    assert load_settings().do_not_track is expected


def test_do_not_track_from_file(home: Path) -> None:
    _write(home, "do_not_track = true\n")
    assert load_settings().do_not_track is True


def test_malformed_toml_names_file_and_line(home: Path) -> None:
    file = _write(home, 'region = "EU"\n\n[ble\nmax_connections = 3\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.file == str(file)
    assert info.value.line == 3
    assert str(file) in str(info.value)


def test_bad_value_names_file_line_and_key(home: Path) -> None:
    file = _write(home, 'region = "EU"\n[ble]\nscan_timeout = 2.0\nmax_connections = -4\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == "ble.max_connections"
    assert info.value.line == 4
    assert info.value.file == str(file)


def test_unknown_key_is_an_error(home: Path) -> None:
    _write(home, "[upload]\nendpont = 'https://x'\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == "upload.endpont"
    assert info.value.line == 2


def test_bad_environment_value_blames_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WKING_SIMULATE", "many")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.file is None
    assert info.value.key == "simulate"
