"""What ``wking`` says: help, prompts and reports describe what this version does (issue 7, 21).

The help and the doctor's text report are checked in subprocesses at 80 columns, as a newcomer
reads them; the prompts of ``consent withdraw --all`` and ``data delete --all`` through click's
runner, with real consent ledgers and record stores.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wking_device.cli import cli

WKING = str(Path(sys.executable).with_name("wking"))
ROOT = Path(__file__).parents[2]


def _wking(
    *args: str, env: dict[str, str] | None = None, columns: int = 80
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WKING, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": str(columns), **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def _commands(group: click.Group) -> dict[str, click.Command]:
    """Every subcommand, loaded: ``wking``'s commands load when asked for (``.commands`` holds
    only those loaded so far, so it depended on which tests ran before)."""
    with click.Context(group) as ctx:
        names = group.list_commands(ctx)
        loaded = {name: group.get_command(ctx, name) for name in names}
    return {name: command for name, command in loaded.items() if command is not None}


def _groups(group: click.Group, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], click.Group]]:
    found = [(path, group)]
    for name, command in sorted(_commands(group).items()):
        if isinstance(command, click.Group):
            words = (*path, name, "C0:57:4B:00:00:01") if name == "control" else (*path, name)
            found.extend(_groups(command, words))
    return found


GROUPS = _groups(cli, ())


# --- help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "group"), GROUPS, ids=[" ".join(w) or "wking" for w, _ in GROUPS]
)
def test_no_command_description_is_cut_off(words: tuple[str, ...], group: click.Group) -> None:
    proc = _wking(*words, "--help")
    assert proc.returncode == 0, proc.stderr
    listing = proc.stdout.split("Commands:", 1)[1].split("\n\n", 1)[0]
    rows = [line.split(None, 1) for line in listing.splitlines() if line.strip()]
    assert {name for name, _ in rows} == set(_commands(group))
    for name, text in rows:
        assert not text.rstrip().endswith("..."), f"{name}: {text}"
        # the summary is a whole sentence, not the start of one
        assert text.rstrip().endswith((".", ")")), f"{name}: {text}"


def test_the_help_points_to_the_docs_and_examples() -> None:
    text = " ".join(_wking("--help").stdout.split())
    assert "docs/cli.md" in text
    assert "examples/" in text


def test_the_home_option_names_its_variable() -> None:
    text = " ".join(_wking("--help").stdout.split())
    home = text.split("--home DIR", 1)[1].split("--simulate", 1)[0]
    assert "WKING_HOME" in home


# --- uploads ------------------------------------------------------------------------------------

# Words left from the version without an uploader: it exists now, so they would be false.
_NO_UPLOAD_CLAIM = re.compile(r"uploads nothing|no effect yet|no uploader", re.IGNORECASE)


def test_no_help_text_or_doc_still_says_nothing_is_uploaded() -> None:
    offenders = []
    for path in [
        *(ROOT / "src" / "wking_device").rglob("*.py"),
        *(ROOT / "docs").glob("*.md"),
        ROOT / "README.md",
    ]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if _NO_UPLOAD_CLAIM.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_data_status_says_where_records_go(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(cli, ["data", "status"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "No collector is configured ([upload] endpoint): nothing leaves this machine" in text
    monkeypatch.setenv("WKING_UPLOAD__ENDPOINT", "https://collector.example/v1/logs")
    result = CliRunner().invoke(cli, ["data", "status"], catch_exceptions=False)
    text = " ".join(result.stdout.split())
    assert "Records go to https://collector.example/v1/logs" in text
    assert "over verified TLS" in text


def test_the_grant_dialogue_says_where_records_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("wking_device.cli._consent._interactive", lambda: True)
    result = CliRunner().invoke(cli, ["consent", "grant", "ip_address"], input="n\n")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stderr.split())
    assert "nothing leaves this machine unless you run 'wking upload" in text
    assert "Matters only when records are uploaded" in text  # ip_address concerns uploads only


def test_data_delete_help_says_what_copies_keep() -> None:
    text = " ".join(_wking("data", "delete", "--help").stdout.split())
    assert "cannot be recovered, from copies" not in text
    assert "copy" in text
    assert "key file" in text
    assert "docs/security.md" in text


# --- doctor -------------------------------------------------------------------------------------


def test_doctor_text_shows_every_key_and_no_none(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "user"), "XDG_CONFIG_HOME": "", "XDG_DATA_HOME": ""}
    env_without_home = {k: v for k, v in os.environ.items() if k != "WKING_HOME"}
    proc = subprocess.run(
        [WKING, "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env_without_home, **env, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(
        subprocess.run(
            [WKING, "--json", "doctor"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={**env_without_home, **env},
        ).stdout
    )
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in proc.stdout.splitlines()
        if line.count("│") == 3
    }
    assert set(rows) == set(data), proc.stdout
    assert "None" not in rows.values()
    assert data["home"] is None
    assert "platform" in rows["home"]
    assert "not created yet" in rows["data_dir"]


def test_doctor_text_shows_the_config_error_whole(home: Path) -> None:
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text('[ble]\nscan_timeout = "x"\n', encoding="utf-8")
    proc = _wking("doctor", columns=300)
    assert proc.returncode == 2
    assert "[ble.scan_timeout]" in proc.stdout
    config_row = next(line for line in proc.stdout.splitlines() if "│ config " in line)
    assert "[ble.scan_timeout]" in config_row
    simulate_row = next(line for line in proc.stdout.splitlines() if "│ simulate " in line)
    assert "None" not in simulate_row


def test_doctor_text_names_how_to_get_bumble(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.version

    def version(name: str) -> str:
        if name == "bumble":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setenv("COLUMNS", "300")  # one row per line, whatever the runner's width
    result = CliRunner().invoke(cli, ["doctor"], catch_exceptions=False, terminal_width=200)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "│ bumble " in line)
    assert "not installed" in row
    assert ".[sim]" in row
    assert "None" not in row
    data = json.loads(CliRunner().invoke(cli, ["--json", "doctor"]).stdout)
    assert data["bumble"] is None  # the JSON shape is unchanged


# --- withdraw --all / delete --all ----------------------------------------------------------------


def _ok(*args: str, input: str | None = None) -> click.testing.Result:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_withdraw_all_names_only_what_was_granted() -> None:
    _ok("consent", "grant", "--yes", "device_info")
    result = _ok("consent", "withdraw", "--all", input="y\n")
    prompt = result.stderr
    assert "device_info" in prompt
    for never in ("operation_logs", "mac_addresses", "location", "ip_address"):
        assert never not in prompt, prompt
    assert "withdrawn: device_info" in result.stdout


def test_withdraw_all_with_nothing_granted_asks_nothing() -> None:
    result = _ok("consent", "withdraw", "--all")  # no input: a question would abort
    assert "nothing to withdraw" in result.stdout
    assert result.stderr == ""
    data = json.loads(_ok("--json", "consent", "withdraw", "--all").stdout)
    assert data["withdrawn"] == []


def test_delete_all_names_only_categories_that_hold_records() -> None:
    _ok("consent", "grant", "--yes", "device_info")
    _ok("--simulate", "2", "agent", "run", "--cycles", "1", "--interval", "0.5")
    result = _ok("data", "delete", "--all", input="y\n")
    prompt = result.stderr
    assert "device_info" in prompt
    for never in ("operation_logs", "mac_addresses", "location", "diagnostics"):
        assert never not in prompt, prompt
    assert "operation_logs" not in result.stdout
    data = json.loads(_ok("--json", "data", "status").stdout)
    assert data["records"]["total"] == 0


def test_delete_all_with_nothing_kept_asks_nothing() -> None:
    result = _ok("data", "delete", "--all")
    assert "nothing to delete" in result.stdout
    assert result.stderr == ""
