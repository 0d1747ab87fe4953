"""What reaches the terminal: untrusted strings escaped, ``--json`` anywhere, whole values in pipes.

A simulated speaker whose name and Device Information strings carry escape sequences, C1
controls, bidirectional overrides, Rich markup and emoji codes is driven through the real
``wking`` in a real process (``hostile_wking.py``); nothing it sends may reach standard output
or error raw. Usage errors are redacted like every other line on standard error. ``--json`` is
accepted before and after every command (the list comes from the click tree). Output to a pipe
is never wrapped or truncated.
"""

from __future__ import annotations

import json
import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from wking_device.cli import cli
from wking_device.cli._term import json_bytes, json_line, markup, visible
from wking_device.receiver import DB_FILE
from wking_device.receiver._db import ReceiverDB

HOSTILE_SCRIPT = Path(__file__).with_name("hostile_wking.py")
WKING = Path(sys.executable).with_name("wking")
ADDRESS = "C0:57:4B:00:00:01"

# The advertised name must fit the 31-byte scan response; Device Information strings need not.
HOSTILE_NAME = "W\x1b]0;T\x07\x1b[2J\u202e[bold]B\x9b"
HOSTILE_FIRMWARE = (
    "1\x1b]8;;http://x\x07[link=http://e]L[/link]\x1b[31m:warning:\u2066\x00\r\nerror: forged line"
)
HOSTILE = {"name": HOSTILE_NAME, "firmware": HOSTILE_FIRMWARE}

# What a terminal acts on: C0 controls but tab and newline, DEL, C1, bidirectional and other
# invisible format characters, line and paragraph separators.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _hostile(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(HOSTILE_SCRIPT), *args],
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "HOSTILE_SPEAKER_STRINGS": json.dumps(HOSTILE), **(env or {})},
    )


def _assert_inert(output: bytes) -> str:
    text = output.decode("utf-8")
    found = RAW.findall(text)
    assert not found, f"raw {found!r} in {text!r}"
    return text


# --- item 9: untrusted strings ------------------------------------------------------------------


def test_the_escaper_makes_every_dangerous_character_visible() -> None:
    assert visible(HOSTILE_NAME) == "W\\x1b]0;T\\x07\\x1b[2J\\u202e[bold]B\\x9b"
    assert visible("a\nb\r\tc") == "a\\nb\\r\\tc"
    assert visible("a\nb\tc\x1b", multiline=True) == "a\nb\tc\\x1b"
    assert visible("Küche 😀\u00a0x") == "Küche 😀\u00a0x"  # printable text is untouched
    assert visible(None) == ""
    assert visible("\ud800\U000e0001\u200b") == "\\ud800\\U000e0001\\u200b"
    assert markup("[bold]x[/bold]") == "\\[bold]x\\[/bold]"


def _fail(message: str) -> None:
    raise ValueError(message)


def test_log_lines_on_stderr_are_escaped_and_keep_one_line_per_message() -> None:
    from wking_device.cli._app import _TerminalFormatter  # noqa: PLC0415 - the CLI's formatter

    formatter = _TerminalFormatter("%(levelname)s %(name)s: %(message)s")
    record = logging.LogRecord(
        "bleak", logging.WARNING, __file__, 1, "device %s\nERROR forged", (HOSTILE_NAME,), None
    )
    try:
        _fail(HOSTILE_FIRMWARE)
    except ValueError:
        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert not RAW.findall(line.replace("\n", "")), line
    assert line.splitlines()[0] == f"WARNING bleak: device {visible(HOSTILE_NAME)}\\nERROR forged"
    assert "Traceback (most recent call last):\n" in line  # a traceback keeps its lines
    assert "[link=http://e]L[/link]" in line


def test_json_bytes_are_exact_json_and_inert() -> None:
    value = {"s": HOSTILE_FIRMWARE + "\u2028\ufeff\u061c é 😀"}
    raw = json_bytes(value)
    assert json.loads(raw) == value
    _assert_inert(raw)
    assert "é 😀".encode() in raw  # printable text stays UTF-8


@pytest.mark.parametrize("render", [json_bytes, lambda v: json_line(v).encode()])
def test_json_escapes_every_character_the_text_output_escapes(render: Any) -> None:
    # DEL, a soft hyphen, the Mongolian vowel separator, interlinear annotation marks and tag
    # characters (invisible text) were written raw in --json output while the text output
    # escaped them: one definition (not str.isprintable(), as visible() uses) for both
    hidden = "W\x7f\u00ad\u180e\ufff9\U000e0041\U000e0042\U0001d173 \u00a0é 😀"
    raw = render({"name": hidden, hidden: 1})
    assert json.loads(raw) == {"name": hidden, hidden: 1}
    text = raw.decode("utf-8")
    shown = {char for char in text if not char.isprintable()} - {"\n", "\u00a0"}
    assert not shown, sorted(shown)
    assert "\\udb40\\udc41" in text  # a tag character: a JSON surrogate pair
    assert "\u00a0é 😀" in text  # printable text and spaces stay UTF-8


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "--timeout", "1"],
        ["info", ADDRESS],
        ["-v", "info", ADDRESS],
        ["control", ADDRESS, "volume", "40"],
        ["scan", "--watch", "--duration", "1"],
    ],
    ids=["scan", "info", "info-verbose", "control", "scan-watch"],
)
def test_hostile_speaker_strings_are_escaped_in_text_output(home: Path, args: list[str]) -> None:
    proc = _hostile("--simulate", "2", *args)
    assert proc.returncode == 0, proc.stderr
    out = _assert_inert(proc.stdout)
    _assert_inert(proc.stderr)
    if "scan" in args or "info" in args:
        assert visible(HOSTILE_NAME) in out  # the name is shown, escaped, on one line
    if "info" in args:
        assert visible(HOSTILE_FIRMWARE) in out  # markup and emoji codes appear literally
        assert "[link=http://e]L[/link]" in out
        assert ":warning:" in out
        assert "\nerror: forged line" not in out


@pytest.mark.parametrize("args", [["scan", "--timeout", "1"], ["info", ADDRESS]])
def test_hostile_speaker_strings_are_exact_and_inert_in_json(home: Path, args: list[str]) -> None:
    proc = _hostile("--simulate", "2", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    _assert_inert(proc.stdout)
    data = json.loads(proc.stdout)
    row = data[0] if isinstance(data, list) else data
    assert row["name"] == HOSTILE_NAME
    if "info" in args:
        assert data["firmware"] == HOSTILE_FIRMWARE


def test_hostile_speaker_names_are_exact_and_inert_in_watch_json_lines(home: Path) -> None:
    proc = _hostile("--simulate", "2", "--json", "scan", "--watch", "--duration", "1")
    assert proc.returncode == 0, proc.stderr
    _assert_inert(proc.stdout)
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert {row["event"] for row in rows} == {"appeared"}
    assert HOSTILE_NAME in {row["name"] for row in rows}


def test_hostile_name_and_alias_in_devices(home: Path) -> None:
    alias = "\x1b]0;owned\x07[bold]kitchen[/bold] :thumbs_up: \u202eevil"
    bound = _hostile("--simulate", "2", "devices", "bind", ADDRESS, "--alias", alias)
    assert bound.returncode == 0, bound.stderr
    assert visible(HOSTILE_NAME) in _assert_inert(bound.stdout)
    listed = _hostile("devices", "list")
    assert listed.returncode == 0, listed.stderr
    out = _assert_inert(listed.stdout)
    assert visible(HOSTILE_NAME) in out
    assert visible(alias) in out
    as_json = _hostile("devices", "list", "--json")
    assert json.loads(as_json.stdout)[0]["alias"] == alias


def _drain(fd: int, proc: subprocess.Popen[bytes]) -> bytes:
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif proc.poll() is not None:
            break
    return b"".join(chunks)


def test_hostile_speaker_strings_on_a_real_terminal(home: Path) -> None:
    # On a terminal rich writes its own styles (SGR); nothing else may reach it.
    master, slave = pty.openpty()
    env = {**os.environ, "HOSTILE_SPEAKER_STRINGS": json.dumps(HOSTILE), "TERM": "xterm-256color"}
    with subprocess.Popen(
        [sys.executable, str(HOSTILE_SCRIPT), "--simulate", "2", "info", ADDRESS],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env=env,
    ) as proc:
        os.close(slave)
        out = _drain(master, proc)
        os.close(master)
        proc.wait(timeout=60)
        stderr = proc.stderr.read() if proc.stderr else b""
    assert proc.returncode == 0, stderr
    text = out.decode("utf-8")
    without_styles = re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\r\n", "\n")
    assert not RAW.findall(without_styles), without_styles
    assert "[link=http://e]L[/link]" in without_styles
    assert "\x1b]" not in text
    assert "\x07" not in text


def test_hostile_home_path_and_config_error_in_doctor_and_the_error_line(tmp_path: Path) -> None:
    # A path is untrusted too (a directory name can hold anything), and so is a config error.
    home = tmp_path / "h\x1b]0;owned\x07[bold]x\u202e\x9b"
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text('[ble]\nscan_timeout = "x"\n', encoding="utf-8")
    for args in (["doctor"], ["--json", "doctor"], ["scan"]):
        proc = _hostile(*args, env={"WKING_HOME": str(home)})
        assert proc.returncode == 2, proc.stderr
        out = _assert_inert(proc.stdout)
        err = _assert_inert(proc.stderr)
        assert err.startswith("error: ")
        assert len(err.strip().splitlines()) == 1, err
        assert "[ble.scan_timeout]" in err
        if args == ["doctor"]:
            assert visible(home) in out
            assert "[ble.scan_timeout]" in out  # not eaten as markup
        if args == ["--json", "doctor"]:
            assert json.loads(out)["home"] == str(home)


# --- item 10: usage errors are redacted -----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["info", "C0-57-4B-00-00-01"],
        ["info", "C0:57:4B:00:00:0G"],
        ["info", "c0574b00000g"],
        ["scan", "--timeout", "C0:57:4B:00:00:01"],
        ["devices", "bind", "C0.57.4B.00.00.01"],
        ["control", "C0:57:4B:00:00:01", "volume", "C0:57:4B:00:00:01"],
        ["info", ADDRESS, "C0:57:4B:00:00:02"],
        ["--simulate", "C0:57:4B:00:00:01", "scan"],
    ],
)
def test_usage_errors_do_not_show_the_typed_address(home: Path, args: list[str]) -> None:
    proc = subprocess.run(
        [str(WKING), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    squeezed = re.sub(r"[^0-9a-z]", "", proc.stderr.lower())
    assert "574b0000" not in squeezed, proc.stderr
    assert "[MAC]" in proc.stderr


def test_usage_errors_are_escaped(home: Path) -> None:
    proc = subprocess.run(
        [str(WKING), "info", "\x1b]0;owned\x07\u202e"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "\\x1b]0;owned\\x07\\u202e" in _assert_inert(proc.stderr)


# --- item 17: --json before and after every command -----------------------------------------------


def _leaves(group: click.Group, prefix: tuple[str, ...]) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # a lazy group: commands load when asked for
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found.extend(_leaves(command, path))
        else:
            found.append(path)
    return found


# Each command's arguments for a run that prints a result. A command added to the tree without
# an entry here fails test_every_command_has_a_json_sample.
SAMPLES: dict[tuple[str, ...], list[str]] = {
    ("agent", "run"): ["--cycles", "1", "--interval", "0.2"],
    ("agent", "status"): [],
    ("completion",): ["bash"],
    ("config", "init"): [],
    ("config", "set"): ["ble.scan_timeout", "8"],
    ("config", "show"): [],
    ("config", "unset"): ["ble.scan_timeout"],
    ("consent", "grant"): ["--yes", "operation_logs"],
    ("consent", "history"): [],
    ("consent", "receipts"): ["--out", "-"],
    ("consent", "reset"): ["--yes"],
    ("consent", "status"): [],
    ("consent", "withdraw"): ["--yes", "operation_logs"],
    ("control", "eq"): ["bass-boost"],
    ("control", "light"): ["rainbow"],
    ("control", "power-off"): [],
    ("control", "volume"): ["40"],
    ("data", "delete"): ["--yes", "operation_logs"],
    ("data", "export"): ["--out", "-"],
    ("data", "status"): [],
    ("demo",): ["--devices", "1", "--duration", "1"],
    ("devices", "bind"): [ADDRESS],
    ("devices", "list"): [],
    ("devices", "unbind"): [ADDRESS],
    ("doctor",): [],
    ("info",): [ADDRESS],
    ("policy", "diff"): ["1.0", "1.1"],
    ("policy", "show"): [],
    ("policy", "versions"): [],
    ("receiver", "export"): ["--data", "receiver-data"],
    ("scan",): ["--timeout", "0.3"],
    # nothing is pending on a fresh home: no connection is made
    ("upload",): ["--endpoint", "https://127.0.0.1:9/v1/logs"],
}
# Commands that serve until interrupted print no result to compare; their --json placement is
# checked by test_long_running_commands_accept_json_after_their_name.
SERVING = {("receiver", "run")}
LEAVES = [leaf for leaf in _leaves(cli, ()) if leaf not in SERVING]


def test_every_command_has_a_json_sample() -> None:
    assert set(LEAVES) == set(SAMPLES)
    assert set(_leaves(cli, ())) == set(LEAVES) | SERVING


@pytest.mark.parametrize("path", sorted(SERVING), ids=" ".join)
def test_long_running_commands_accept_json_after_their_name(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--json", "--help"])
    assert result.exit_code == 0, result.stderr


def _argv(path: tuple[str, ...], *, json_after: bool) -> list[str]:
    words = list(path)
    if words[0] == "control":
        words.insert(1, ADDRESS)  # the group's argument sits between the words
    glob = ["--simulate", "1"] + ([] if json_after else ["--json"])
    return [*glob, *words, *SAMPLES[path], *(["--json"] if json_after else [])]


def _prepare(runner: CliRunner, path: tuple[str, ...]) -> None:
    if path in {("consent", "withdraw"), ("data", "delete"), ("agent", "run")}:
        runner.invoke(cli, ["consent", "grant", "--yes", "operation_logs"])
    if path == ("devices", "unbind"):
        runner.invoke(cli, ["--simulate", "1", "devices", "bind", ADDRESS])
    if path == ("receiver", "export"):
        data = Path("receiver-data")
        data.mkdir(exist_ok=True)
        ReceiverDB(data / DB_FILE).close()


def _outcome(runner: CliRunner, path: tuple[str, ...], *, json_after: bool) -> tuple[int, Any]:
    _prepare(runner, path)
    result = runner.invoke(cli, _argv(path, json_after=json_after))
    assert "no such option" not in result.stderr.lower(), result.stderr
    if result.exit_code != 0:
        return result.exit_code, result.stderr.split(":")[0]
    if path == ("consent", "receipts"):
        return 0, sorted(json.loads(result.stdout))
    data = json.loads(result.stdout)  # JSON, not a table
    return 0, sorted(data) if isinstance(data, dict) else type(data).__name__


@pytest.mark.parametrize("path", LEAVES, ids=[" ".join(path) for path in LEAVES])
def test_json_is_accepted_before_and_after_every_command(
    path: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)  # relative sample paths (the receiver's --data) land here
    outcomes = []
    for json_after in (False, True):
        monkeypatch.setenv("WKING_HOME", str(tmp_path / f"home-{json_after}"))
        outcomes.append(_outcome(runner, path, json_after=json_after))
    before, after = outcomes
    assert before == after
    assert before[0] in {0, 2}  # `consent reset` of a ledger that verifies is a usage error
    if path != ("consent", "reset"):
        assert before[0] == 0, before


# --- item 19: pipes get whole values ------------------------------------------------------------


def _piped(*args: str) -> str:
    proc = _hostile(*args, env={"COLUMNS": "40"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.decode()


def _line_with(text: str, value: str) -> str:
    lines = [line for line in text.splitlines() if value in line]
    assert lines, f"{value!r} is not whole on one line of:\n{text}"
    return lines[0]


def test_piped_output_never_wraps_or_truncates(home: Path) -> None:
    granted = _piped("--json", "consent", "grant", "--yes", "operation_logs", "device_info")
    consent_id = json.loads(granted)["consent_id"]
    text = _piped("consent", "grant", "--yes", "diagnostics")
    assert "…" not in text
    second = json.loads(_piped("--json", "consent", "history"))[-1]["id"]
    _line_with(text, second)
    status = _piped("consent", "status")
    assert "…" not in status
    for item in json.loads(_piped("--json", "consent", "status"))["categories"]:
        line = _line_with(status, item["category"])
        if item["granted_at"]:
            assert item["granted_at"] in line
    history = _piped("consent", "history")
    assert "…" not in history
    assert "device_info, operation_logs" in history
    receipts = _piped("consent", "receipts", "--out", "-")
    assert consent_id in receipts
    alias = "the speaker in the kitchen next to the window " * 4
    _piped("--simulate", "2", "devices", "bind", ADDRESS, "--alias", alias.strip())
    listed = _piped("devices", "list")
    _line_with(listed, alias.strip())
    _line_with(listed, visible(HOSTILE_NAME))


def test_piped_info_shows_a_long_firmware_string_whole(home: Path) -> None:
    firmware = "v" + ".".join(str(n) for n in range(80))
    proc = subprocess.run(
        [sys.executable, str(HOSTILE_SCRIPT), "--simulate", "1", "info", ADDRESS],
        capture_output=True,
        timeout=120,
        check=False,
        env={
            **os.environ,
            "COLUMNS": "40",
            "HOSTILE_SPEAKER_STRINGS": json.dumps({"firmware": firmware}),
        },
    )
    assert proc.returncode == 0, proc.stderr
    _line_with(proc.stdout.decode(), firmware)


def test_progress_on_a_terminal_is_redacted_and_escaped(home: Path) -> None:
    # The spinner is drawn on standard error only when it is a terminal; it is stderr all the
    # same (the journal under systemd): no MAC address there.
    master, slave = pty.openpty()
    with subprocess.Popen(
        [str(WKING), "--simulate", "2", "info", ADDRESS],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "TERM": "xterm-256color"},
    ) as proc:
        os.close(slave)
        err = _drain(master, proc)
        os.close(master)
        proc.wait(timeout=60)
        out = proc.stdout.read() if proc.stdout else b""
    assert proc.returncode == 0, err
    assert ADDRESS in out.decode()  # the result, on standard output, names the speaker
    text = err.decode()
    assert "Connecting to [MAC]" in text, text
    assert "57:4B" not in text


def test_consent_reset_asks_on_stderr_so_json_stays_valid(home: Path) -> None:
    subprocess.run(
        [str(WKING), "consent", "grant", "--yes", "operation_logs"], check=True, timeout=60
    )
    ledger = home / "data" / "consent" / "ledger.jsonl"
    ledger.write_text(ledger.read_text().replace("operation_logs", "device_info"))
    proc = subprocess.run(
        [str(WKING), "--json", "consent", "reset"],
        input="y\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["reset"] is True
    assert "Set it aside" in proc.stderr
