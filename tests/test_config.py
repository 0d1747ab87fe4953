from __future__ import annotations

from pathlib import Path

import pytest

from wking_device.config import load_settings, resolve_paths
from wking_device.errors import ConfigError, StorageError


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


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WKING_BLE__SCAN_TIMEOUT", "soon")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == "ble.scan_timeout"
    assert "WKING_BLE__SCAN_TIMEOUT" in str(info.value)


def test_environment_error_is_blamed_on_the_variable_even_when_the_file_sets_the_key(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(home, "[ble]\nscan_timeout = 2.0\n")
    monkeypatch.setenv("WKING_BLE__SCAN_TIMEOUT", "-1")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.file is None
    assert "WKING_BLE__SCAN_TIMEOUT" in str(info.value)


def test_malformed_json_in_a_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # the value is decoded as JSON before validation: its error names the variable too
    monkeypatch.setenv("WKING_UPLOAD__SPKI_PINS", "not-json")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "WKING_UPLOAD__SPKI_PINS" in str(info.value)


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DO_NOT_TRACK", "")
    monkeypatch.setenv("WKING_SIMULATE", "")
    settings = load_settings()
    assert settings.do_not_track is False
    assert settings.simulate == 0


def test_environment_cannot_switch_off_do_not_track_of_the_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DESIGN §3: DO_NOT_TRACK=1 *or* do_not_track = true denies everything
    _write(home, "do_not_track = true\n")
    monkeypatch.setenv("DO_NOT_TRACK", "0")
    assert load_settings().do_not_track is True


@pytest.mark.parametrize(
    ("dnt", "wking_dnt"), [("0", "1"), ("1", "0"), ("false", "true"), ("true", "false")]
)
def test_either_do_not_track_variable_switches_it_on(
    monkeypatch: pytest.MonkeyPatch, dnt: str, wking_dnt: str
) -> None:
    monkeypatch.setenv("DO_NOT_TRACK", dnt)
    monkeypatch.setenv("WKING_DO_NOT_TRACK", wking_dnt)
    assert load_settings().do_not_track is True


def test_malformed_do_not_track_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DO_NOT_TRACK", "0")
    monkeypatch.setenv("WKING_DO_NOT_TRACK", "perhaps")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "WKING_DO_NOT_TRACK" in str(info.value)


def test_ensure_with_a_file_in_the_way_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError) as info:
        resolve_paths(blocker / "home").ensure()
    assert str(blocker / "home") in str(info.value)


def test_unresolvable_home_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_paths("~no-such-user-of-wking/home")
    assert "~no-such-user-of-wking/home" in str(info.value)


def test_adapter_setting_is_validated(home: Path) -> None:
    _write(home, '[ble]\nadapter = "hci1"\n')
    assert load_settings().ble.adapter == "hci1"
    _write(home, '[ble]\nadapter = "/org/bluez/hci1"\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == "ble.adapter"


@pytest.mark.parametrize(
    ("adapters", "expected"),
    [
        ('adapters = ["hci0", "/org/bluez/hci1"]', "ble.adapters"),  # not a plain name
        ('adapters = ["hci0", "hci0"]', "ble.adapters"),  # listed twice
        ('adapters = "hci0"', "ble.adapters"),  # a list, not a text
        ('adapter = "hci2"\nadapters = ["hci0", "hci1"]', "ble"),  # the sources disagree
    ],
)
def test_several_adapters_are_validated(home: Path, adapters: str, expected: str) -> None:
    _write(home, f"[ble]\n{adapters}\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert (info.value.key or "").startswith(expected), info.value
    assert "adapter" in str(info.value)


def test_several_adapters_from_the_file_and_the_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(home, '[ble]\nadapter = "hci1"\nadapters = ["hci0", "hci1"]\n')
    assert load_settings().ble.adapters == ("hci0", "hci1")
    monkeypatch.setenv("WKING_BLE__ADAPTERS", '["hci1", "hci2"]')
    assert load_settings().ble.adapters == ("hci1", "hci2")
    monkeypatch.setenv("WKING_BLE__ADAPTERS", '["hci0"]')  # hci1 (the file's adapter) is gone
    with pytest.raises(ConfigError, match="not one of adapters"):
        load_settings()


@pytest.mark.parametrize(
    ("upload", "expected"),
    [
        ('endpoint = "http://collector.example/v1/logs"', "https"),
        ('endpoint = "collector.example"', "https"),
        ('client_key = "/k.pem"', "client_key is set without client_cert"),
        ('spki_pins = ["not-a-pin"]', "SHA-256 SPKI pin"),
        ("batch_size = 0", "greater than or equal to 1"),
        ("concurrency = 9", "less than or equal to 8"),
        ('token = "secret"', "Extra inputs"),  # a token is read from token_file only
    ],
)
def test_upload_settings_are_validated(home: Path, upload: str, expected: str) -> None:
    paths = resolve_paths(home)
    paths.ensure()
    paths.config_file.write_text(f"[upload]\n{upload}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=expected) as info:
        load_settings(paths)
    assert info.value.exit_code == 2
    assert "config.toml" in str(info.value)


def test_upload_settings_accept_every_pin_form(home: Path) -> None:
    paths = resolve_paths(home)
    paths.ensure()
    pins = ["sha256//" + "A" * 43 + "=", "B" * 43 + "=", "ab" * 32, ":".join(["cd"] * 32)]
    listed = ", ".join(f'"{pin}"' for pin in pins)
    text = f'[upload]\nendpoint = "https://c.example"\ntoken_file = "/t"\nspki_pins = [{listed}]\n'
    paths.config_file.write_text(text, encoding="utf-8")
    upload = load_settings(paths).upload
    assert upload.spki_pins == tuple(pins)
    assert upload.endpoint == "https://c.example"


def test_variables_are_read_in_any_letter_case_and_tables_merge(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(home, "[ble]\nmax_connections = 7\nconnect_attempts = 2\n")
    monkeypatch.setenv("WKING_BLE", '{"max_connections": 8, "scan_timeout": 4}')
    monkeypatch.setenv("wking_ble__scan_timeout", "3")
    monkeypatch.setenv("WKING_UPLOAD__SPKI_PINS", '["' + "ab" * 32 + '"]')
    ble = load_settings().ble
    assert (ble.max_connections, ble.scan_timeout, ble.connect_attempts) == (8, 3.0, 2)
    assert load_settings().upload.spki_pins == ("ab" * 32,)


def test_an_unknown_key_of_a_section_in_a_variable_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WKING_BLE__SCAN_TIMEOUTS", "3")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == "ble.scan_timeouts"
    assert "WKING_BLE__SCAN_TIMEOUTS" in str(info.value)


def test_a_section_variable_that_is_not_json_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WKING_UPLOAD", "endpoint=https://x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "WKING_UPLOAD" in str(info.value)
