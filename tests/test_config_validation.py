"""The settings classes validate in ``__init__`` and refuse hostile values from files and variables.

The settings are frozen, slotted attrs classes (issue 11: no pydantic at start-up). A value a
library user gives is checked at once (``BleSettings(connect_attempts=0)`` raises); a value a
file or a variable gives is coerced as before (``"7"`` is 7, ``7.0`` is 7) and anything else is a
one-line :class:`ConfigError` naming the key and the file's line or the variable. Hostile input
(NaN, infinities, huge numbers, booleans for numbers, control characters, wrong types in lists)
comes out refused, named and escaped.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from wking_device.cli import cli
from wking_device.config import (
    BleSettings,
    Settings,
    StorageSettings,
    UploadSettings,
    load_settings,
    resolve_paths,
)
from wking_device.errors import ConfigError

_PIN = "sha256//" + "A" * 43 + "="


def _write(home: Path, text: str) -> Path:
    paths = resolve_paths(home)
    paths.ensure()
    paths.config_file.write_text(text, encoding="utf-8")
    return paths.config_file


# --- built in code ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "key", "fragment"),
    [
        (lambda: BleSettings(connect_attempts=0), "ble.connect_attempts", "greater than or equal"),
        (lambda: BleSettings(max_connections=65), "ble.max_connections", "less than or equal"),
        (lambda: BleSettings(scan_timeout=float("nan")), "ble.scan_timeout", "finite"),
        (lambda: BleSettings(command_timeout=float("inf")), "ble.command_timeout", "finite"),
        (lambda: BleSettings(connect_timeout=10**400), "ble.connect_timeout", "less than"),
        (lambda: BleSettings(connect_attempts=True), "ble.connect_attempts", "valid integer"),
        (lambda: BleSettings(adapter="hci0\n"), "ble.adapter", "pattern"),
        (lambda: BleSettings(adapters=("hci0", "hci0")), "ble.adapters", "listed twice"),
        (lambda: BleSettings(adapter="hci2", adapters=("hci0",)), "ble", "not one of adapters"),
        (lambda: StorageSettings(max_bytes=10**30), "storage.max_bytes", "less than or equal"),
        (lambda: UploadSettings(endpoint="http://c.example"), "upload.endpoint", "https://"),
        (lambda: UploadSettings(client_key=Path("/k")), "upload", "without client_cert"),
        (lambda: UploadSettings(ca_bundle=""), "upload.ca_bundle", "non-empty path"),
        (lambda: UploadSettings(spki_pins=(_PIN, 7)), "upload.spki_pins.1", "valid string"),
        (lambda: Settings.from_mapping({"simulate": -1}), "simulate", "greater than or equal"),
        (lambda: Settings.from_mapping({"ble": 5}), "ble", "valid dictionary"),
        (lambda: Settings.from_mapping({"ble": {"x": 1}}), "ble.x", "Extra inputs"),
        (lambda: Settings(tokn="x"), "tokn", "Extra inputs"),
    ],
)
def test_a_bad_value_given_in_code_is_refused_at_once_naming_its_key(
    build: object, key: str, fragment: str
) -> None:
    assert callable(build)
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.key == key
    assert fragment in str(info.value)
    assert info.value.exit_code == 2


def test_settings_are_frozen_and_slotted() -> None:
    for settings in (BleSettings(), StorageSettings(), UploadSettings(), Settings()):
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            settings.region = "US"  # type: ignore[union-attr, misc]
        assert not hasattr(settings, "__dict__")
    assert hash(BleSettings()) == hash(BleSettings())


def test_replace_makes_a_validated_copy() -> None:
    ble = BleSettings(connect_attempts=1)
    assert ble.replace(connect_attempts=2) == BleSettings(connect_attempts=2)
    assert ble.connect_attempts == 1  # unchanged
    with pytest.raises(ConfigError) as info:
        ble.replace(connect_attempts=11)
    assert info.value.key == "ble.connect_attempts"
    with pytest.raises(TypeError):
        ble.replace(connect_attempt=2)
    with pytest.raises(ConfigError) as info:
        Settings.from_mapping({}).replace(ble={"max_connections": 0})
    assert info.value.key == "ble.max_connections"


def test_replace_does_not_read_the_environment_again(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_mapping({"ble": {"scan_timeout": 2.0}})
    monkeypatch.setenv("WKING_BLE__SCAN_TIMEOUT", "3")
    copy = settings.replace(minor=True)
    assert copy.minor is True
    assert copy.ble.scan_timeout == 2.0
    assert Settings().ble.scan_timeout == 3.0  # the constructor does read it


def test_a_variable_overriding_one_key_keeps_the_others_of_a_section_given_in_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WKING_BLE__SCAN_TIMEOUT", "3")
    ble = Settings(ble=BleSettings(max_connections=9)).ble
    assert (ble.max_connections, ble.scan_timeout) == (9, 3.0)


def test_values_are_converted_as_a_file_or_variable_gives_them() -> None:
    settings = Settings.from_mapping(
        {
            "minor": "yes",
            "simulate": "2",
            "ble": {"max_connections": 7.0, "scan_timeout": 2, "adapters": ["hci0"]},
            "upload": {"ca_bundle": "/ca.pem", "endpoint": "  https://c.example  "},
        }
    )
    assert settings.minor is True
    assert settings.simulate == 2
    assert settings.ble.max_connections == 7
    assert isinstance(settings.ble.scan_timeout, float)
    assert settings.ble.adapters == ("hci0",)
    assert settings.upload.ca_bundle == Path("/ca.pem")
    assert settings.upload.endpoint == "https://c.example"


# --- from the file ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[ble]\nmax_connections = true", "ble.max_connections", "valid integer"),
        ("[ble]\nscan_timeout = false", "ble.scan_timeout", "valid number"),
        ("simulate = true", "simulate", "valid integer"),
        ("[storage]\nmax_bytes = nan", "storage.max_bytes", "finite"),
        ("[storage]\nmax_bytes = -inf", "storage.max_bytes", "finite"),
        ("[storage]\nmax_bytes = 1e300", "storage.max_bytes", "less than or equal"),
        ("[storage]\nmax_bytes = 99999999999999999999999999999", "storage.max_bytes", "less than"),
        ("[ble]\nconnect_attempts = 2.5", "ble.connect_attempts", "fractional part"),
        ('[ble]\nconnect_attempts = "٣"', "ble.connect_attempts", "valid integer"),
        ('[ble]\nadapters = ["hci0", 1]', "ble.adapters.1", "valid string"),
        ('[ble]\nadapters = [["hci0"]]', "ble.adapters.0", "valid string"),
        ('[ble]\nadapters = "hci0"', "ble.adapters", "valid tuple"),
        (
            "[ble]\nadapters = [" + ", ".join(f'"hci{i}"' for i in range(17)) + "]",
            "ble.adapters",
            "16",
        ),
        ('[upload]\nspki_pins = ["sha256//x", 2]', "upload.spki_pins.1", "valid string"),
        ('[upload]\nca_bundle = ""', "upload.ca_bundle", "non-empty path"),
        ("[upload]\nca_bundle = 5", "upload.ca_bundle", "valid path"),
        ('[upload]\nendpoint = "https://c.example/\\u0000x"', "upload.endpoint", "control"),
        ('[upload]\ncollector_region = ""', "upload.collector_region", "short code"),
        ('region = ["EU"]', "region", "valid string"),
        ("minor = 2", "minor", "valid boolean"),
    ],
)
def test_a_hostile_value_in_the_file_names_the_file_its_line_and_key(
    home: Path, text: str, key: str, fragment: str
) -> None:
    file = _write(home, text + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == key
    assert info.value.file == str(file)  # the file is blamed, not the environment
    assert info.value.line == text.count("\n") + 1
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        '[ble]\nadapter = "hci0\\u001b[31m\\nhci1"',
        '[upload]\nspki_pins = ["\\u001b]0;owned\\u0007\\nsha256//x"]',
        '[upload]\nendpoint = "\\u001b[2Jhttp://c.example"',
        '"\\u001b[2Jbad\\nkey" = 1',
        '[ble]\n"\\u001b[31mscan" = 1',
    ],
)
def test_escape_sequences_in_a_bad_value_come_out_escaped_on_one_line(
    home: Path, text: str
) -> None:
    _write(home, text + "\n")
    with pytest.raises(ConfigError):
        load_settings()
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert "\x1b" not in result.stderr
    assert "\x07" not in result.stderr


def test_a_huge_hostile_pin_is_not_repeated_in_full(home: Path) -> None:
    _write(home, f'[upload]\nspki_pins = ["{"x" * 100_000}"]\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == "upload.spki_pins"
    assert len(str(info.value)) < 500


# --- from the environment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("WKING_BLE__MAX_CONNECTIONS", "true", "ble.max_connections"),
        ("WKING_BLE__MAX_CONNECTIONS", "9" * 5000, "ble.max_connections"),
        ("WKING_BLE__MAX_CONNECTIONS", "٣", "ble.max_connections"),
        ("WKING_BLE__MAX_CONNECTIONS", "0x10", "ble.max_connections"),
        ("WKING_BLE__SCAN_TIMEOUT", "1e400", "ble.scan_timeout"),
        ("WKING_BLE__SCAN_TIMEOUT", "-nan", "ble.scan_timeout"),
        ("WKING_BLE__SCAN_TIMEOUT", "٣", "ble.scan_timeout"),
        ("WKING_STORAGE__MAX_BYTES", "1" + "0" * 400, "storage.max_bytes"),
        ("WKING_SIMULATE", "\x1b[2J", "simulate"),
        ("WKING_MINOR", "maybe\x1b[31m", "minor"),
        ("WKING_BLE__ADAPTERS", '["hci0", 1]', "ble.adapters.1"),
        ("WKING_BLE__ADAPTERS", '{"hci0": true}', "ble.adapters"),
        ("WKING_BLE__ADAPTER", "hci0\n", "ble.adapter"),
        ("WKING_UPLOAD__ENDPOINT", "https://c.example\r\nX-Evil: 1", "upload.endpoint"),
        ("WKING_UPLOAD__SPKI_PINS", '["\\u001b[31m"]', "upload.spki_pins"),
        ("WKING_UPLOAD", '{"batch_size": 1e999}', "upload.batch_size"),
        ("WKING_BLE", '{"bogus\\n\\u001b": 3}', "ble.bogus\n\x1b"),
    ],
)
def test_a_hostile_variable_is_named_and_blamed(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, key: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == key
    assert info.value.file is None
    assert variable in str(info.value)
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1
    assert "\x1b" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("WKING_BLE__MAX_CONNECTIONS", " 9 ", 9),
        ("WKING_BLE__MAX_CONNECTIONS", "9.0", 9),
        ("WKING_BLE__MAX_CONNECTIONS", "+9", 9),
        ("WKING_BLE__MAX_CONNECTIONS", "1_0", 10),
        ("WKING_BLE__SCAN_TIMEOUT", "1e3", 1000.0),
        ("WKING_BLE__SCAN_TIMEOUT", " 2.5 ", 2.5),
    ],
)
def test_numbers_in_variables_are_read_as_before(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: float
) -> None:
    monkeypatch.setenv(variable, value)
    ble = load_settings().ble
    assert getattr(ble, variable.rpartition("__")[2].lower()) == expected


def test_config_set_knows_the_type_of_every_setting() -> None:
    # `wking config set` takes text settings as typed and parses the others as TOML values: it
    # reads the annotation as written in config.py, so a new spelling must be known here
    from wking_device._configfile import _TEXT_TYPES, _field_type, setting_keys  # noqa: PLC0415

    other = {"int", "float", "bool", "tuple[str, ...]"}
    for key in setting_keys():
        assert _field_type(key) in _TEXT_TYPES | other, key
    assert _field_type("upload.ca_bundle") in _TEXT_TYPES
    assert _field_type("ble.max_connections") not in _TEXT_TYPES


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://alice:s3cret@collector.example/v1/logs",
        "https://s3cret@collector.example",
        "https://:s3cret@collector.example:4318",
    ],
)
def test_credentials_in_the_endpoint_are_refused_and_never_shown(
    home: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    # a password in the URL would be printed by `wking config show`, kept in shell history and
    # logs: refused where the setting is read, without repeating it
    with pytest.raises(ConfigError, match="credentials") as info:
        UploadSettings(endpoint=endpoint)
    assert "s3cret" not in str(info.value)
    _write(home, f'[upload]\nendpoint = "{endpoint}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == "upload.endpoint"
    assert "s3cret" not in str(info.value)
    _write(home, "")
    monkeypatch.setenv("WKING_UPLOAD__ENDPOINT", endpoint)
    result = CliRunner().invoke(cli, ["config", "show"])
    assert result.exit_code == 2, result.output
    assert "s3cret" not in result.output
    assert "token in a file and set upload.token_file" in result.stderr  # where it belongs
    assert "[TOKEN]" not in result.stderr


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('region = "\\u001b[31mUS"', "region"),
        ('region = ""', "region"),
        (f'region = "{"E" * 33}"', "region"),
        ('region = "EU; DROP"', "region"),
        ('[upload]\ncollector_region = "US\\nEU"', "upload.collector_region"),
        ('[upload]\ncollector_region = "Ü"', "upload.collector_region"),
    ],
)
def test_a_region_is_a_short_code(home: Path, text: str, key: str) -> None:
    # recorded with every consent event and compared for cross-border transfer: a code, not
    # free text (an escape sequence or a megabyte would go into every ledger entry)
    _write(home, text + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.key == key
    assert "short code" in str(info.value)


def test_regions_are_read_without_surrounding_blanks(home: Path) -> None:
    _write(home, 'region = " us-ca "\n[upload]\ncollector_region = "EU"\n')
    settings = load_settings()
    assert (settings.region, settings.upload.collector_region) == ("us-ca", "EU")
