"""``wking config init|show|set`` and ``wking completion``, on real homes and real processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from wking_device._configfile import TEMPLATE, setting_keys
from wking_device.cli import cli
from wking_device.config import Settings, load_settings, resolve_paths

WKING = str(Path(sys.executable).with_name("wking"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WKING_HOME", str(tmp_path / "home"))
    for name in list(os.environ):
        if name.upper().startswith("WKING_") and name != "WKING_HOME":
            monkeypatch.delenv(name)
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    return tmp_path / "home"


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def _config(home: Path) -> Path:
    return home / "config" / "config.toml"


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


# --- the template --------------------------------------------------------------------------------


def test_template_names_every_setting_at_its_default() -> None:
    # every commented `# key = value` line, uncommented, is a valid file equal to the defaults
    # (except the examples of keys whose default is unset)
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and " = " in line and "(" not in line else line
        for line in TEMPLATE.splitlines()
    )
    data = tomllib.loads(uncommented)
    named = {k for k, v in data.items() if not isinstance(v, dict)}
    named |= {f"{s}.{k}" for s, t in data.items() if isinstance(t, dict) for k in t}
    assert named == set(setting_keys())
    Settings.from_mapping(data)
    defaults = Settings.from_mapping({})
    for key in setting_keys():
        section, _, name = key.rpartition(".")
        default = getattr(getattr(defaults, section) if section else defaults, name)
        written = data[section][name] if section else data[name]
        if default not in (None, ()):
            assert written == default, key


def test_init_writes_a_private_commented_file_that_loads_as_the_defaults(home: Path) -> None:
    code, out, err = _run("config", "init")
    assert code == 0, err
    assert "wrote" in out
    file = _config(home)
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert file.read_text().startswith("# wking settings")
    assert load_settings(resolve_paths(home)) == Settings()


def test_init_refuses_to_overwrite_without_force(home: Path) -> None:
    assert _run("config", "init")[0] == 0
    _config(home).write_text('region = "US"\n')
    code, _, err = _run("config", "init")
    assert code == 2
    assert "exists" in err
    assert "--force" in err
    assert _config(home).read_text() == 'region = "US"\n'  # untouched
    code, _, err = _run("config", "init", "--force")
    assert code == 0, err
    assert _config(home).read_text() == TEMPLATE


# --- show --------------------------------------------------------------------------------------


def test_show_names_the_source_of_every_setting_and_creates_nothing(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = _run("--json", "config", "show")
    assert code == 0, err
    assert _files(home) == []  # a command that only reports creates nothing
    shown = json.loads(out)
    assert set(shown["settings"]) == set(setting_keys())
    assert {v["source"] for v in shown["settings"].values()} == {"default"}
    assert shown["file_exists"] is False

    _config(home).parent.mkdir(parents=True)
    _config(home).write_text('region = "US"\n[ble]\nscan_timeout = 7.5\n')
    monkeypatch.setenv("WKING_BLE__SCAN_TIMEOUT", "9")
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    code, out, err = _run("config", "show", "--json")
    assert code == 0, err
    settings = json.loads(out)["settings"]
    assert settings["region"] == {"value": "US", "source": "file", "variable": None}
    assert settings["ble.scan_timeout"] == {
        "value": 9.0,
        "source": "env",
        "variable": "WKING_BLE__SCAN_TIMEOUT",
    }
    assert settings["do_not_track"]["source"] == "env"
    assert settings["do_not_track"]["value"] is True
    assert settings["minor"]["source"] == "default"


def test_show_renders_a_table_on_a_terminal(home: Path) -> None:
    code, out, err = _run("config", "show")
    assert code == 0, err
    assert "upload.endpoint" in out
    assert "(unset)" in out
    assert "default" in out


def test_show_of_a_malformed_file_names_file_line_and_key(home: Path) -> None:
    _config(home).parent.mkdir(parents=True)
    _config(home).write_text("[ble]\nscan_timeout = -1\n")
    code, _, err = _run("config", "show")
    assert code == 2
    assert "config.toml:2" in err
    assert "ble.scan_timeout" in err


# --- set ---------------------------------------------------------------------------------------


def test_set_keeps_comments_and_writes_a_valid_private_file(home: Path) -> None:
    assert _run("config", "init")[0] == 0
    _config(home).chmod(0o644)  # a file made loose by hand is private again after a set
    code, out, err = _run(
        "config", "set", "upload.endpoint", "https://collector.example.org/v1/logs"
    )
    assert code == 0, err
    assert "upload.endpoint" in out
    assert _run("config", "set", "ble.max_connections", "7")[0] == 0
    assert _run("config", "set", "location", "1")[0] == 0  # text for a text setting, not 1
    assert _run("config", "set", "upload.spki_pins", '["' + "a" * 64 + '"]')[0] == 0
    text = _config(home).read_text()
    assert text.startswith("# wking settings")
    assert "# Concurrent connections per adapter" in text
    settings = load_settings(resolve_paths(home))
    assert settings.upload.endpoint == "https://collector.example.org/v1/logs"
    assert settings.ble.max_connections == 7
    assert settings.location == "1"
    assert settings.upload.spki_pins == ("a" * 64,)
    assert stat.S_IMODE(_config(home).stat().st_mode) == 0o600


def test_set_on_a_home_without_a_file_creates_it(home: Path) -> None:
    code, _, err = _run("config", "set", "ble.scan_timeout", "8")
    assert code == 0, err
    assert tomllib.loads(_config(home).read_text()) == {"ble": {"scan_timeout": 8}}


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("ble.scan_timeout", "abc", "ble.scan_timeout"),
        ("ble.scan_timeout", "inf", "ble.scan_timeout"),
        ("ble.max_connections", "1000", "ble.max_connections"),
        ("upload.endpoint", "http://collector.example.org/v1/logs", "upload.endpoint"),
        ("upload.client_key", "/k.pem", "upload"),  # a key without a certificate
        ("ble.adapter", "bluetooth0", "ble.adapter"),
        ("do_not_track", "maybe", "do_not_track"),
    ],
)
def test_set_validates_the_whole_file_and_names_the_key(
    home: Path, key: str, value: str, named: str
) -> None:
    assert _run("config", "init")[0] == 0
    before = _config(home).read_bytes()
    code, _, err = _run("config", "set", key, value)
    assert code == 2
    assert f"[{named}" in err, err
    assert _config(home).read_bytes() == before  # nothing saved
    assert [p.name for p in _config(home).parent.iterdir()] == ["config.toml"]  # no temp file


def test_set_refuses_an_invalid_file_elsewhere(home: Path) -> None:
    _config(home).parent.mkdir(parents=True)
    _config(home).write_text("[storage]\nmax_bytes = 5\n")
    code, _, err = _run("config", "set", "region", "US")
    assert code == 2
    assert "storage.max_bytes" in err
    assert _config(home).read_text() == "[storage]\nmax_bytes = 5\n"


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("ble.scan_timeot", "did you mean ble.scan_timeout"),
        ("ble", "is a section"),
        ("nonsense", "config show"),
    ],
)
def test_set_of_an_unknown_key_is_a_usage_error(home: Path, key: str, hint: str) -> None:
    code, _, err = _run("config", "set", key, "1")
    assert code == 2
    assert hint in err
    assert not _config(home).exists()


@pytest.mark.parametrize("key", ["upload.token", "upload.bearer_token", "password", "secret"])
def test_a_secret_is_never_set_inline_nor_repeated(home: Path, key: str) -> None:
    secret = "s3cr3t-value-0123456789"
    code, out, err = _run("config", "set", key, secret)
    assert code == 2
    assert "token_file" in err
    assert secret not in err + out
    assert not _config(home).exists()


def test_set_cannot_inject_toml(home: Path) -> None:
    hostile = 'EU"\n[upload]\nendpoint = "https://evil.example"\n#'
    code, _, err = _run("config", "set", "location", hostile)
    assert code == 0, err
    settings = load_settings(resolve_paths(home))
    assert settings.location == hostile  # one string, escaped in the file
    assert settings.upload.endpoint is None


def test_set_replaces_a_symlink_instead_of_writing_through_it(home: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text("")
    _config(home).parent.mkdir(parents=True)
    _config(home).symlink_to(elsewhere)
    assert _run("config", "set", "region", "US")[0] == 0
    assert elsewhere.read_text() == ""
    assert not _config(home).is_symlink()


def test_set_json_output(home: Path) -> None:
    code, out, _ = _run("config", "set", "ble.scan_timeout", "8", "--json")
    assert code == 0
    assert json.loads(out) == {
        "path": str(_config(home)),
        "key": "ble.scan_timeout",
        "value": 8,
    }


# --- completion ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F"), ("zsh", "#compdef wking"), ("fish", "complete ")],
)
def test_completion_prints_clicks_script(shell: str, marker: str) -> None:
    proc = subprocess.run([WKING, "completion", shell], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert marker in proc.stdout
    assert "_WKING_COMPLETE" in proc.stdout
    assert proc.stderr == ""  # eval "$(wking completion bash)" runs at every shell start


def test_completion_completes_commands_in_a_real_process(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WKING_HOME": str(tmp_path / "home"),
        "_WKING_COMPLETE": "bash_complete",
        "COMP_WORDS": "wking con",
        "COMP_CWORD": "1",
    }
    proc = subprocess.run([WKING], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    words = {line.split(",", 1)[1] for line in proc.stdout.splitlines()}
    assert words == {"config", "consent", "control"}
    assert not (tmp_path / "home").exists()


def test_completion_of_an_unknown_shell_is_a_usage_error() -> None:
    code, _, err = _run("completion", "powershell")
    assert code == 2
    assert "powershell" in err


# --- unset -------------------------------------------------------------------------------------


def test_unset_takes_a_key_out_and_keeps_the_rest(home: Path) -> None:
    assert _run("config", "init")[0] == 0
    assert _run("config", "set", "upload.endpoint", "https://collector.example.org/v1/logs")[0] == 0
    assert _run("config", "set", "ble.max_connections", "7")[0] == 0
    code, out, err = _run("config", "unset", "upload.endpoint")
    assert code == 0, err
    assert "taken out" in out
    text = _config(home).read_text()
    assert text.startswith("# wking settings")  # comments kept
    settings = load_settings(resolve_paths(home))
    assert settings.upload.endpoint is None  # the default again
    assert settings.ble.max_connections == 7  # the rest untouched
    assert stat.S_IMODE(_config(home).stat().st_mode) == 0o600
    code, out, _ = _run("--json", "config", "unset", "upload.endpoint")
    assert code == 0
    assert json.loads(out)["removed"] is False  # not there: nothing changed
    assert _config(home).read_text() == text


def test_unset_of_an_unknown_key_or_a_section_is_a_usage_error(home: Path) -> None:
    code, _, err = _run("config", "unset", "ble.scan_timout")
    assert code == 2
    assert "did you mean ble.scan_timeout" in err
    code, _, err = _run("config", "unset", "ble")
    assert code == 2
    assert "is a section" in err
    assert not _config(home).exists()  # nothing created


def test_unset_removes_a_secret_written_by_hand_and_an_empty_section(home: Path) -> None:
    _config(home).parent.mkdir(parents=True)
    _config(home).write_text('region = "EU"\n[upload]\ntoken = "s3cret"\n', encoding="utf-8")
    code, out, err = _run("config", "unset", "upload.token")
    assert code == 0, err
    assert "s3cret" not in out + err
    assert tomllib.loads(_config(home).read_text()) == {"region": "EU"}


def test_markup_and_escapes_in_the_home_path_and_a_value_are_printed_literally(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the home path and a text value are the caller's, not the CLI's: Rich must not read them
    # as markup (a link, or a closing tag that makes rich raise) nor the terminal as escapes
    from wking_device.cli._term import visible  # noqa: PLC0415

    home = tmp_path / "[link=http://evil.example]h[/link][/x]\x1b]0;t\x07"
    monkeypatch.setenv("WKING_HOME", str(home))
    value = "[bold]EU[/bold]\x1b[2J"
    shown = visible(_config(home))
    code, out, err = _run("config", "init")
    assert code == 0, err
    assert out == f"wrote {shown}\n"
    code, out, err = _run("config", "set", "location", value)
    assert code == 0, err
    assert out == f"location = {visible(value)} in {shown}\n"
    code, out, err = _run("config", "show")
    assert code == 0, err
    assert out.startswith(f"file: {shown}\n")
    assert visible(value) in out
    code, out, err = _run("config", "unset", "location")
    assert code == 0, err
    assert out == f"location taken out of {shown}: its default applies\n"
