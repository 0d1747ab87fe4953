"""Every command and code snippet in README.md and docs/*.md is run, parsed or validated.

The fenced code blocks are found in the Markdown itself (``--8<--`` includes expanded, so the
changelog and benchmarks/README.md count too), so a block a new section adds is picked up without
touching this file:

- ``sh``/``bash``/``shell``/``console`` blocks: each command (a ``$ `` line in ``console``, every
  line in ``sh``) that starts with ``wking`` runs in a real subprocess, as the reader types it, on
  a temporary ``WKING_HOME`` shared by the commands of one document in document order. Its exit
  status must be 0 — or non-zero where the documented output is an ``error:`` line — and the
  output documented under a ``$`` command must appear in what it printed (``…`` matches anything).
  A command that needs a terminal, an adapter, a receiver, or runs until stopped is in ``HOW``
  with what is run instead, or why it is not run. Any other command fails the test: it is neither
  runnable nor listed.
- ``python`` blocks run as a script in a subprocess (``PYTHON_HOW`` for the ones run as a pytest
  module or inside a harness).
- ``toml`` blocks are validated by the project's config loader (or the fault-plan loader),
  ``json`` and ``yaml`` blocks parsed, ``ini``/``systemd`` blocks parsed as unit files.
- A code block of another language, and a command outside a fenced block, fail the test.

Every failure names the file and line of the block.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from wking_device.config import load_settings, resolve_paths
from wking_device.receiver import load_fault_plan

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "shell", "console"}
PLAIN = {"", "text", "txt"}  # diagrams, byte dumps, trees: only checked for commands


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it starts, its language and its lines with their numbers."""

    where: str  # "docs/cli.md:15" (an included file's own path and line)
    lang: str
    lines: tuple[tuple[str, str], ...]  # (where, text)

    @property
    def text(self) -> str:
        return "\n".join(text for _, text in self.lines) + "\n"


_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_SNIPPET = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$')


def _lines(path: Path) -> list[tuple[str, str]]:
    """The lines of a Markdown file with ``--8<-- "file[:start[:end]]"`` includes expanded."""
    out: list[tuple[str, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = _SNIPPET.match(line)
        if not match:
            out.append((f"{path.relative_to(ROOT)}:{number}", line))
            continue
        name, *bounds = match.group(1).split(":")
        included = _lines(ROOT / name)
        start = int(bounds[0]) if bounds and bounds[0] else 1
        end = int(bounds[1]) if len(bounds) > 1 and bounds[1] else len(included)
        out.extend(included[start - 1 : end])
    return out


def _blocks(path: Path) -> tuple[list[Block], list[tuple[str, str]]]:
    """The fenced blocks of a document, and its lines outside them."""
    blocks: list[Block] = []
    prose: list[tuple[str, str]] = []
    lines = _lines(path)
    i = 0
    while i < len(lines):
        where, line = lines[i]
        match = _FENCE.match(line)
        if not match:
            prose.append((where, line))
            i += 1
            continue
        indent, fence, lang = match.groups()
        body: list[tuple[str, str]] = []
        i += 1
        while i < len(lines) and not lines[i][1].strip().startswith(fence):
            at, text = lines[i]
            body.append((at, text.removeprefix(indent)))
            i += 1
        i += 1
        blocks.append(Block(where, lang.lower(), tuple(body)))
    return blocks, prose


ALL = {path: _blocks(path) for path in DOCS}


def _of(*langs: str) -> list[Block]:
    return [block for blocks, _ in ALL.values() for block in blocks if block.lang in langs]


# --- shell commands ---------------------------------------------------------------------------


@dataclass(frozen=True)
class How:
    """How a documented command is exercised when it cannot run as written.

    Attributes:
        reason: Why it is not run as written (shown when the command is not run at all).
        run: The command run instead; ``None``: not run. ``{port}`` is the reference receiver's
            port, ``{rx}`` its data directory (a receiver is started for the document),
            ``{free}`` a free port.
        output: Compare the documented output with what it printed.
        before: Shell commands run first (e.g. writing a config file); ``after``: run afterwards.
        when: Only for the occurrence whose documented output contains this text.
        expect: Documented-output text replaced before comparing ({home}, {port} substituted).
    """

    reason: str
    run: str | None = None
    output: bool = True
    before: str = ""
    after: str = ""
    when: str = ""
    expect: tuple[tuple[str, str], ...] = ()


_INSTALL = (
    "installs into a virtual environment: .ci/run runs exactly this in a fresh clone, and "
    "tests/test_install_docs.py checks the install instructions"
)
_BENCH = "a benchmark: minutes of CPU, run by hand and never in the suite (benchmarks/README.md)"

# Matched (re.fullmatch) against the command with its `# comment` and `$ ` prompt removed and its
# blanks collapsed; the first entry that matches (and whose `when` is in the documented output)
# applies.
HOW: list[tuple[str, How]] = [
    (r"cd \S+", How("changes directory into the checkout: the tests run in it")),
    (r"python3 -m venv \.venv", How(_INSTALL)),
    (r"(\.venv/bin/)?pip3? install .*", How(_INSTALL)),
    (
        r"python3 -m venv \.venv && \.venv/bin/pip install -e \"\.\[sim\]\" && "
        r"\.venv/bin/(wking .*)",
        How(_INSTALL + "; the wking command after it runs on its own", run=r"\1"),
    ),
    (
        r"python3 -m venv \.venv && \.venv/bin/pip install -e \"\.\[dev\]\" && "
        r"\.venv/bin/python -m pytest -n 4",
        How("the test suite itself, as .ci/run runs it"),
    ),
    (r"(\.venv/bin/)?python -m pytest.*", How("the test suite itself, as .ci/run runs it")),
    (
        r"\.venv/bin/(wking(?: .*)?)",
        How(
            "the checkout's virtual environment's wking, installed by the lines above: the tests "
            "run the wking of their own environment (first on PATH), the same command",
            run=r"\1",
        ),
    ),
    (r"\.venv/bin/python benchmarks/.*", How(_BENCH)),
    (
        r"wking consent grant",
        How(
            "offers every category one by one on a terminal (tests/cli/test_cli_app.py drives "
            "the dialogue); run with named categories and --yes instead",
            run="wking consent grant --yes operation_logs device_info",
            output=False,
        ),
    ),
    (
        r"wking receiver run --port 4318 --data (\S+)",
        How(
            "runs until stopped: started on a free port, stopped with SIGTERM once listening",
            run=r"wking receiver run --port {free} --data \1",
            expect=(("4318", "{free}"),),
        ),
    ),
    (
        r"wking --json receiver export --data \S+",
        How(
            "the records shown were received from an agent; the receiver started above holds none",
            run="wking --json receiver export --data {rx}",
            output=False,
        ),
    ),
    (
        r"wking upload --endpoint https://127\.0\.0\.1:4318",
        How(
            "needs pending records (nothing pending: nothing to send, no connection) and a TLS "
            "server whose CA this machine does not trust: the reference receiver",
            run="wking upload --endpoint https://127.0.0.1:{port}",
            before="wking consent grant --yes operation_logs && "
            "wking --simulate 1 agent run --duration 1",
            expect=(("4318", "{port}"),),
        ),
    ),
    (
        r"(?:[A-Z_]+=\S*\s+)*wking (?:--\S+ (?:\d+ )?)*receiver run .*",
        How(
            "runs until stopped: started on a free port, stopped with SIGTERM once listening",
            run="wking receiver run --port {free} --data {rx}-doc",
            output=False,
        ),
    ),
    (
        r"(?:sudo )?(?:systemctl|journalctl|loginctl|systemd-creds|systemd-analyze|useradd|"
        r"install|apt|apt-get|dnf|usermod|chown|chmod|mkdir) .*",
        How(
            "changes this machine's system set-up (root, systemd, packages): deployment steps "
            "are checked by reading, and the unit file by tests/test_doc_snippets.py's ini check"
        ),
    ),
    (
        r"head -c 32 /dev/urandom \| sudo systemd-creds encrypt .*",
        How(
            "needs root and the host's credential key: encrypts a new key into the system "
            "credential store, a deployment step checked by reading"
        ),
    ),
    (r"sudo .*", How("needs root: a system set-up step, not run by the suite")),
    (
        r"curl .*https://sh\.rustup\.rs \| sh .*",
        How(
            "downloads and installs the Rust toolchain into the home directory: a build "
            "prerequisite on a Pi without wheels, not a step of this machine"
        ),
    ),
    (
        r"\. \"\$HOME/\.cargo/env\"",
        How("loads the Rust toolchain rustup installed (the step above, not run here)"),
    ),
    (
        r"pipx install \./wking_device-\*-py3-none-any\.whl",
        How(
            "installs the built wheel into ~/.local with pipx: tests/test_wheel.py builds the "
            "wheel and installs it into a fresh venv"
        ),
    ),
    (
        r"cp examples/systemd/wking-agent\.user\.service ~/\.config/systemd/user/\S+",
        How(
            "installs the user unit into this user's systemd configuration: the unit is checked "
            "by tests/test_systemd_units.py (systemd-analyze verify)"
        ),
    ),
    (
        r"wk\(\) \{ sudo systemd-run .* /opt/wking/venv/bin/wking \"\$@\"; \}",
        How(
            "defines `wk`: wking run as the service's user with its home and credential, through "
            "sudo systemd-run (root); the `wk` commands after it run as plain wking here"
        ),
    ),
    (
        r"wk doctor",
        How(
            "`wk` runs wking as the service's user (next entry); doctor connects to the collector "
            "and collector.example.org is none: the endpoint is set to the reference receiver, "
            "trusting its CA, then plain wking doctor runs",
            run="wking config set upload.endpoint https://127.0.0.1:{port}/v1/logs >/dev/null && "
            "wking config set upload.ca_bundle {rx}/ca.pem >/dev/null && wking doctor",
        ),
    ),
    (
        r"wk (.+)",
        How(
            "`wk` (defined above) runs wking as the service's user through sudo systemd-run: run "
            "here as plain wking on this document's home, the same command and arguments",
            run=r"wking \1",
        ),
    ),
    (
        r"python3 -c \"import sysconfig; print\(sysconfig\.get_platform\(\)\)\"",
        How(
            "prints this machine's platform: a Pi's 64-bit userland prints linux-aarch64, this "
            "machine its own",
            run=r"\g<0>",
            expect=(("linux-aarch64", sysconfig.get_platform()),),
        ),
    ),
    (
        r"WKING_BLE__SCAN_TIMEOUT=9 wking --json config show",
        How(
            'shows a setting from config.toml: a file setting region = "US" is written first, '
            "and removed after",
            run=r"\g<0>",
            before='mkdir -p "$WKING_HOME/config" && '
            'printf \'region = "US"\\n\' > "$WKING_HOME/config/config.toml"',
            after='rm "$WKING_HOME/config/config.toml"',
        ),
    ),
    (
        r"wking agent status",
        How(
            "reports an agent running for this home: one is started first (a simulated speaker, "
            "stopped with SIGTERM after), and the status shown once it reports it running (grep "
            "reads all of it: with -q, pipefail would see wking's SIGPIPE)",
            when="agent running",
            run="wking --simulate 1 agent run --duration=30 >agent.log 2>&1 & "
            "for i in $(seq 100); do kill -0 $! 2>/dev/null || break; "
            "wking agent status | grep '^agent running' >/dev/null && break; sleep 0.2; done; "
            "wking agent status; kill -TERM $! 2>/dev/null; wait $!; s=$?; cat agent.log; exit $s",
            expect=(
                ("(pid 4242) since 2026-01-05T09:12:03+01:00", "(pid …) since …"),
                ("last cycle 2026-01-05T09:40:17+01:00", "last cycle …"),
            ),
        ),
    ),
    (
        r"eval \"\$\(wking completion bash\)\"",
        How(
            "loads the script into this shell (a ~/.bashrc line): run in bash, then checked to "
            "have registered wking's completion",
            run=r"\g<0> && complete -p wking",
        ),
    ),
    (
        r"eval \"\$\(wking completion zsh\)\"",
        How(
            "loads the script into zsh (a ~/.zshrc line), which this machine may not have: the "
            "script is printed and checked to register wking's completion with compdef",
            run="wking completion zsh | grep '^ *compdef _wking_completion wking$' >/dev/null",
        ),
    ),
    (
        r"wking completion fish > ~/\.config/fish/completions/wking\.fish",
        How(
            "writes into this user's fish configuration: run with HOME set to a directory of the "
            "test (created first), and the file checked to register wking's completion",
            before='mkdir -p "$WKING_HOME/fish-home/.config/fish/completions"',
            run='HOME="$WKING_HOME/fish-home"; \\g<0> && '
            "grep -q -- '--command wking' ~/.config/fish/completions/wking.fish",
        ),
    ),
    (
        r"wking --simulate 2 scan",
        How(
            "shows the error of a bad config.toml: the file is written first, and removed after",
            run="wking --simulate 2 scan",
            when="config.toml:2 [ble.scan_timeout]",
            before='mkdir -p "$WKING_HOME/config" && '
            "printf '[ble]\\nscan_timeout = 0\\n' > \"$WKING_HOME/config/config.toml\"",
            after='rm "$WKING_HOME/config/config.toml"',
            expect=(("/home/me/.config/wking/", "{home}/config/"),),
        ),
    ),
]

# A command is runnable as written when it starts with `wking` (after VAR=value assignments).
_RUNNABLE = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*wking(?:\s|$)")
# Long runs are shortened (an agent without --duration gets one); a prompt needs a terminal, and
# --yes stands for the answer there.
_DURATION = re.compile(r"--duration\s+(\d+(?:\.\d+)?)")
_ASKS = re.compile(r"\bwking\b.*\bconsent (grant|withdraw)\b(?!.*--yes)(?=.*\s[a-z_]+\b|.*--all)")


def _commands(block: Block) -> list[tuple[str, str, list[str]]]:
    """(where, command, documented output lines) for each command of a shell block."""
    found: list[tuple[str, str, list[str]]] = []
    pending = ""
    for where, raw in block.lines:
        line = raw.rstrip()
        if block.lang == "console":
            if line.startswith("$ "):
                found.append((where, line[2:], []))
            elif found and line.strip():
                found[-1][2].append(line)
            continue
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        found.append((where, pending + line, []))
        pending = ""
    return found


def _normalize(command: str) -> str:
    words = re.sub(r"(^|\s)#.*$", "", command)  # a trailing comment (none of ours quote a #)
    return " ".join(words.split())


def _how(command: str, output: list[str]) -> How | None:
    text = "\n".join(output)
    for pattern, how in HOW:
        if re.fullmatch(pattern, command) and how.when in text:
            if how.run is None:
                return how
            return How(**{**how.__dict__, "run": re.sub(pattern, how.run, command)})
    return None


def _adapt(command: str) -> str:
    command = _DURATION.sub(lambda m: f"--duration {min(float(m.group(1)), 2):g}", command)
    if re.search(r"\bagent run\b", command):
        if "--duration" not in command:
            command += " --duration 2"  # it runs until stopped otherwise
        if "--cycles" not in command and "&" not in command:
            command += " --cycles 1"  # ends after its first cycle, not its (bounded) duration
    if _ASKS.search(command):
        command += " --yes"
    return command


def _matches(expected: list[str], actual: str) -> str | None:
    """None when the expected lines appear in order in ``actual``; else the first missing one."""
    lines = actual.splitlines()
    at = 0
    for want in expected:
        pattern = re.compile(
            ".*".join(re.escape(part.strip()) for part in want.split("…")) + r"\s*$"
        )
        for i in range(at, len(lines)):
            if pattern.match(lines[i].strip()):
                at = i + 1
                break
        else:
            return want
    return None


def _read_lines(proc: subprocess.Popen[str], count: int, timeout: float = 30) -> list[str]:
    """Up to ``count`` lines a process prints, waiting at most ``timeout`` seconds for them."""
    lines: list[str] = []
    assert proc.stdout is not None
    stdout = proc.stdout
    reader = threading.Thread(target=lambda: lines.extend(stdout.readline() for _ in range(count)))
    reader.start()
    reader.join(timeout)
    if reader.is_alive():  # it printed less: stop it, the reader then sees the end of output
        proc.send_signal(signal.SIGTERM)
        reader.join(timeout)
    return lines


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _Session:
    """A reader's shell: one home, one working directory, a receiver started when needed."""

    def __init__(self, tmp: Path) -> None:
        self.home = tmp / "home"
        self.cwd = tmp / "work"
        self.cwd.mkdir()
        self.rx = tmp / "rx-reference"
        self.port = 0
        self.receiver: subprocess.Popen[str] | None = None
        self.env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("WKING_") and name != "DO_NOT_TRACK"
        }
        self.env.update(
            WKING_HOME=str(self.home),
            PATH=f"{BIN}{os.pathsep}{self.env.get('PATH', '')}",
            COLUMNS="200",
            PYTHONWARNINGS="error::ResourceWarning",
        )
        self.status = 0

    def fill(self, text: str, free: int = 0) -> str:
        if "{port}" in text or "{rx}" in text:
            self._start_receiver()
        return text.format(port=self.port, rx=self.rx, home=self.home, free=free)

    def _start_receiver(self) -> None:
        if self.receiver is not None:
            return
        self.port = _free_port()
        self.receiver = subprocess.Popen(
            ["wking", "receiver", "run", "--port", str(self.port), "--data", str(self.rx)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            cwd=self.cwd,
        )
        line = "".join(_read_lines(self.receiver, 1))  # once it listens (or exits)
        assert "listening on" in line, line

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.send_signal(signal.SIGTERM)
            self.receiver.communicate(timeout=30)

    def sh(self, command: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
        )

    def background(self, command: str) -> str:
        """Start a command that runs until stopped; stop it with SIGTERM once it printed."""
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            cwd=self.cwd,
        )
        printed = _read_lines(proc, 2)  # what it prints when it is ready
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
        self.status = proc.returncode
        return "".join(printed) + rest


def _run_command(session: _Session, where: str, documented: str, output: list[str]) -> str | None:
    """Run one documented command; a failure message, or None."""
    command = _normalize(documented)
    if command == "echo $?":
        shown = output[0].strip() if output else ""
        if shown != str(session.status):
            return (
                f"{where}: `echo $?` documents {shown}, the command before exited {session.status}"
            )
        return None
    how = _how(command, output)
    if how is None and not _RUNNABLE.match(command):
        return (
            f"{where}: `{command}` is neither runnable (it does not start with `wking`) nor listed "
            "in HOW (tests/test_doc_snippets.py) with how to run it or why it is not run"
        )
    if how is not None and how.run is None:
        return None  # listed with its reason
    free = _free_port()
    run = _adapt(session.fill(how.run if how and how.run else command, free))
    expected = output if how is None or how.output else []
    for old, new in how.expect if how else ():
        expected = [line.replace(old, session.fill(new, free)) for line in expected]
    if how and how.before:
        done = session.sh(how.before)
        if done.returncode != 0:
            return f"{where}: the set-up `{how.before}` failed:\n{done.stdout}{done.stderr}"
    try:
        if how and "runs until stopped" in how.reason:
            printed = session.background(run)
        else:
            proc = session.sh(run)
            session.status = proc.returncode
            printed = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired:
        return f"{where}: `{run}` did not finish in time"
    finally:
        if how and how.after:
            session.sh(how.after)
    if "Traceback" in printed:
        return f"{where}: `{run}` printed a traceback:\n{printed[-2000:]}"
    wants_error = any(line.startswith("error:") for line in output)
    if (session.status != 0) != wants_error:
        return (
            f"{where}: `{run}` exited {session.status}"
            f"{' (the doc shows an error)' if wants_error else ''}:\n{printed[-2000:]}"
        )
    missing = _matches([line for line in expected if line.strip()], printed)
    if missing is not None:
        return (
            f"{where}: `{run}` did not print the documented line\n  {missing}\n"
            f"it printed:\n{printed[-2000:]}"
        )
    return None


@pytest.mark.timeout(900)  # a document's commands run one after the other, each bounded
@pytest.mark.parametrize("doc", DOCS, ids=[str(path.relative_to(ROOT)) for path in DOCS])
def test_every_documented_command_runs(doc: Path, tmp_path: Path) -> None:
    blocks = [block for block in ALL[doc][0] if block.lang in SHELL]
    failures: list[str] = []
    session = _Session(tmp_path)
    try:
        for block in blocks:
            for where, command, output in _commands(block):
                failure = _run_command(session, where, command, output)
                if failure:
                    failures.append(failure)
    finally:
        session.close()
    assert not failures, "\n\n".join(failures)


def test_every_command_is_in_a_fenced_block_with_a_language() -> None:
    # an indented code block or a ``` block without a language escapes the test above
    looks_like_command = re.compile(r"^\s*(\$ |wking |\.venv/bin/)")
    offenders = []
    for blocks, prose in ALL.values():
        for where, line in prose:
            if line.startswith(("    ", "\t")) and looks_like_command.match(line):
                offenders.append(f"{where}: a command outside a fenced block: {line.strip()}")
        for block in blocks:
            if block.lang in PLAIN:
                offenders += [
                    f"{where}: a command in a ``` block without sh/console: {text.strip()}"
                    for where, text in block.lines
                    if looks_like_command.match(text)
                ]
    assert not offenders, "\n".join(offenders)


CHECKED = SHELL | PLAIN | {"python", "py", "toml", "json", "yaml", "yml", "ini", "systemd"}


def test_every_code_block_has_a_language_this_module_checks() -> None:
    unknown = [
        f"{block.where}: ```{block.lang} (add a checker to tests/test_doc_snippets.py)"
        for blocks, _ in ALL.values()
        for block in blocks
        if block.lang not in CHECKED
    ]
    assert not unknown, "\n".join(unknown)


# --- Python -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PyHow:
    """How a Python snippet that is not a whole program is run.

    Attributes:
        reason: Why it is not run as a script.
        pytest: Run it as a test module (``pytest`` with the ``wking_sim`` plugin's fixtures).
        harness: A program with ``{snippet}`` where the snippet goes (indented to fit).
        run: ``False``: not run (the reason says which program runs the same code), only
            compiled.
    """

    reason: str
    pytest: bool = False
    harness: str = ""
    run: bool = True


_CODEC_HARNESS = """\
import asyncio
from bleak import BleakClient, BleakScanner
from wking_device.protocol import *
from wking_device.sim import SimWorld

async def main() -> None:
    async with SimWorld.fleet(1) as world:
        found = await BleakScanner.discover(1.0, backend=world.backend.scanner)
        async with BleakClient(found[0], backend=world.backend.client) as client:
            handle = print
            {snippet}

asyncio.run(main())
"""

# (a regular expression found in the snippet, how it runs)
PYTHON_HOW: list[tuple[str, PyHow]] = [
    (
        r"^async def test_\w+\(",
        PyHow("pytest tests using the simulator's fixtures: run by pytest", pytest=True),
    ),
    (
        r"codec = WKING_V1\.new_codec\(",
        PyHow(
            "a fragment of a program holding a connected BleakClient `client`",
            harness=_CODEC_HARNESS,
        ),
    ),
    (
        r"found = await discover\(timeout=5\.0\)\n.*disconnected_callback=",
        PyHow(
            "needs a Bluetooth adapter and a speaker in range, and follows its events until the "
            "link is lost: examples/companion.py is this program on a simulated speaker, run by "
            "tests/test_examples.py",
            run=False,
        ),
    ),
]


def _python_how(block: Block) -> PyHow | None:
    return next((h for pattern, h in PYTHON_HOW if re.search(pattern, block.text, re.M)), None)


def _python_run(block: Block, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    how = _python_how(block)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("WKING_") and name != "DO_NOT_TRACK"
    }
    env["WKING_HOME"] = str(tmp_path / "home")
    if how is not None and how.pytest:
        script = tmp_path / "test_snippet.py"
        script.write_text(block.text, encoding="utf-8")
        argv = [
            "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto",
            "-o", "asyncio_default_fixture_loop_scope=function",
            "-W", "error", str(script),
        ]  # fmt: skip
    else:
        text = block.text
        if how is not None and how.harness:
            indent = re.search(r"^( *)\{snippet\}", how.harness, re.M)
            assert indent is not None
            body = text.replace("\n", "\n" + indent.group(1)).rstrip()
            text = how.harness.replace("{snippet}", body)
        script = tmp_path / "snippet.py"
        script.write_text(text, encoding="utf-8")
        argv = ["-W", "error", str(script)]
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
    )


PYTHON = _of("python", "py")


@pytest.mark.parametrize("block", PYTHON, ids=[block.where for block in PYTHON])
def test_every_python_snippet_runs(block: Block, tmp_path: Path) -> None:
    how = _python_how(block)
    if how is not None and not how.run:
        compile(block.text, block.where, "exec")  # listed with its reason: a syntax error fails
        return
    proc = _python_run(block, tmp_path)
    assert proc.returncode == 0, f"{block.where}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"


# --- configuration and data ---------------------------------------------------------------------


TOML = _of("toml")


@pytest.mark.parametrize("block", TOML, ids=[block.where for block in TOML])
def test_every_toml_block_is_valid_for_what_reads_it(block: Block, tmp_path: Path) -> None:
    try:
        data = tomllib.loads(block.text)
    except tomllib.TOMLDecodeError as exc:
        data, problem = {}, f"not valid TOML: {exc}"
    else:
        problem = ""
    assert not problem, f"{block.where}: {problem}"
    if {"seed", "reset_rate", "truncate_rate", "status"} & set(data):  # a receiver fault plan
        plan = tmp_path / "plan.toml"
        plan.write_text(block.text, encoding="utf-8")
        load_fault_plan(plan)
        return
    # a config.toml (or a part of one): what `wking` loads, with the project's own loader
    paths = resolve_paths(tmp_path / "home")
    paths.config_file.parent.mkdir(parents=True)
    paths.config_file.write_text(block.text, encoding="utf-8")
    try:
        load_settings(paths)
    except Exception as exc:  # noqa: BLE001 - any error is the doc's, reported with its place
        problem = f"the config loader refuses it: {exc}"
    assert not problem, f"{block.where}: {problem}"


JSON = _of("json")


@pytest.mark.parametrize("block", JSON, ids=[block.where for block in JSON])
def test_every_json_block_parses(block: Block) -> None:
    problem = ""
    try:
        json.loads(block.text)
    except json.JSONDecodeError as exc:
        problem = f"not valid JSON: {exc}"
    assert not problem, f"{block.where}: {problem}"


def test_every_yaml_block_parses() -> None:
    import yaml  # noqa: PLC0415 - PyYAML comes with mkdocs (the docs extra, in dev)

    problems = []
    for block in _of("yaml", "yml"):
        try:
            yaml.safe_load(block.text)
        except yaml.YAMLError as exc:
            problems.append(f"{block.where}: not valid YAML: {exc}")
    assert not problems, "\n".join(problems)


def test_every_unit_file_block_parses() -> None:
    # ```ini / ```systemd blocks: systemd unit files and the like
    problems = []
    for block in _of("ini", "systemd"):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            parser.read_string(block.text)
        except configparser.Error as exc:
            problems.append(f"{block.where}: not a valid unit/ini file: {exc}")
    assert not problems, "\n".join(problems)


# --- the checker itself -------------------------------------------------------------------------


def test_the_extractor_finds_the_blocks_it_is_meant_to() -> None:
    cli = ALL[ROOT / "docs" / "cli.md"][0]
    commands = [c for block in cli if block.lang in SHELL for _, c, _ in _commands(block)]
    assert "wking --simulate 3 control C0:57:4B:00:00:02 volume 40" in commands
    changelog = ALL[ROOT / "docs" / "changelog.md"][1]
    assert any(where.startswith("CHANGELOG.md:") for where, _ in changelog)


def test_an_unlisted_command_fails_with_its_place(tmp_path: Path) -> None:
    session = _Session(tmp_path)
    failure = _run_command(session, "docs/x.md:3", "make me-a-sandwich", [])
    assert failure is not None
    assert failure.startswith("docs/x.md:3: `make me-a-sandwich` is neither runnable")


def test_a_wrong_documented_output_fails(tmp_path: Path) -> None:
    session = _Session(tmp_path)
    failure = _run_command(session, "docs/x.md:9", "wking --version", ["wking 0.0.0-not-this"])
    assert failure is not None
    assert "did not print the documented line" in failure
    assert _run_command(session, "docs/x.md:9", "wking policy versions", []) is None
    failure = _run_command(session, "docs/x.md:11", "echo $?", ["3"])
    assert failure is not None
    assert "exited 0" in failure


def test_commands_that_wait_are_adapted_and_system_steps_are_listed() -> None:
    assert _adapt("wking --simulate 3 agent run --duration 10") == (
        "wking --simulate 3 agent run --duration 2 --cycles 1"
    )
    assert _adapt("wking agent run") == "wking agent run --duration 2 --cycles 1"
    assert _adapt("wking agent run --cycles 3") == "wking agent run --cycles 3 --duration 2"
    assert (
        _adapt("wking consent grant operation_logs") == "wking consent grant operation_logs --yes"
    )
    assert (
        _adapt("wking consent withdraw --yes location") == "wking consent withdraw --yes location"
    )
    assert _adapt("wking consent status") == "wking consent status"
    listed = _how("sudo systemctl enable --now wking-agent", [])
    assert listed is not None
    assert listed.run is None
    assert listed.reason
