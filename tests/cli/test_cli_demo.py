"""``wking demo`` in a real process: every stage checked, nothing left behind, Ctrl-C, the checks.

The demo runs the real parts (the receiver with its private CA, bumble speakers, the agent, the
uploader); these tests run it as users do, with ``HOME``, ``WKING_HOME`` and ``TMPDIR`` pointed
at empty directories so that anything it leaves behind, in the user's home or the temporary
one, is seen.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wking_device.cli._demo import _summary, mac_spellings, scan_for_macs

WKING = Path(sys.executable).with_name("wking")
MAC = "C0:57:4B:00:00:02"


def _dirs(tmp_path: Path) -> tuple[dict[str, str], list[Path]]:
    user_home, wking_home, tmp = tmp_path / "user", tmp_path / "wking-home", tmp_path / "tmp"
    for directory in (user_home, wking_home, tmp):
        directory.mkdir()
    env = {
        **os.environ,
        "HOME": str(user_home),
        "WKING_HOME": str(wking_home),
        "TMPDIR": str(tmp),
        "XDG_DATA_HOME": str(user_home / ".local" / "share"),
        "XDG_CONFIG_HOME": str(user_home / ".config"),
    }
    return env, [user_home, wking_home, tmp]


def _contents(directories: list[Path]) -> list[str]:
    return sorted(str(path) for directory in directories for path in directory.rglob("*"))


def test_demo_passes_every_stage_and_leaves_nothing_behind(tmp_path: Path) -> None:
    env, watched = _dirs(tmp_path)
    started = time.monotonic()
    proc = subprocess.run(
        [str(WKING), "demo", "--devices", "3", "--duration", "8"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    for stage in ("discovered", "consent", "collected", "encrypted", "uploaded", "received"):
        assert stage in out
    assert "none found" in out
    assert "FAILED" not in out
    assert "\x1b[" not in out  # a pipe gets no live view
    assert _contents(watched) == []
    print(f"wking demo --devices 3 --duration 8: {elapsed:.1f} s")


def test_demo_json_with_faults_proves_retries_and_de_duplication(tmp_path: Path) -> None:
    env, watched = _dirs(tmp_path)
    proc = subprocess.run(
        [str(WKING), "demo", "--devices", "3", "--duration", "4", "--faults", "--json"],
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout)
    assert [s["stage"] for s in summary["stages"] if s["ok"]] == [
        "discovered",
        "consent",
        "collected",
        "encrypted",
        "uploaded",
        "received",
    ]
    assert summary["upload"]["sent"] == summary["received"] > 0
    # the receiver answers 503 or drops the connection after storing, now and then
    assert summary["upload"]["retried"] > 0
    assert _contents(watched) == []


def test_demo_refuses_under_do_not_track_with_one_line(tmp_path: Path) -> None:
    env, watched = _dirs(tmp_path)
    proc = subprocess.run(
        [str(WKING), "demo", "--duration", "1"],
        capture_output=True,
        env={**env, "DO_NOT_TRACK": "1"},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3
    err = proc.stderr.decode()
    assert len(err.strip().splitlines()) == 1, err
    assert "Do Not Track" in err
    assert _contents(watched) == []


def _read_until(master: int, proc: subprocess.Popen[bytes], marker: bytes, limit: float) -> bytes:
    seen = b""
    end = time.monotonic() + limit
    while marker not in seen and time.monotonic() < end and proc.poll() is None:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                seen += os.read(master, 65536)
            except OSError:
                break
    return seen


def test_demo_live_view_on_a_terminal_and_ctrl_c_cleans_up(tmp_path: Path) -> None:
    env, watched = _dirs(tmp_path)
    master, slave = pty.openpty()
    with subprocess.Popen(
        [str(WKING), "demo", "--devices", "2", "--duration", "60"],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        env={**env, "TERM": "xterm-256color", "COLUMNS": "100"},
    ) as proc:
        os.close(slave)
        shown = _read_until(master, proc, b"uploaded", 60)
        assert b"speakers seen" in shown, shown
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        _read_until(master, proc, b"\x00", 1)
        os.close(master)
        stderr = proc.stderr.read() if proc.stderr else b""
    assert proc.returncode == 130, stderr
    assert stderr.decode().strip() == "interrupted"
    assert _contents(watched) == []


# --- the checks themselves can fail ------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        b"C0:57:4B:00:00:02",
        b"c0:57:4b:00:00:02",
        b"C0-57-4B-00-00-02",
        b"c0574b000002",
        b"C0574B000002",
        b"c057.4b00.0002",
        "C0:57:4B:00:00:02".encode("utf-16-le"),
        bytes.fromhex("C0574B000002"),
        bytes.fromhex("020000 4B57C0".replace(" ", "")),
    ],
)
def test_the_mac_search_finds_every_spelling(tmp_path: Path, spelling: bytes) -> None:
    file = tmp_path / "records.sqlite3-wal"
    file.write_bytes(os.urandom(100) + spelling + os.urandom(100))
    other = tmp_path / "clean"
    other.write_bytes(b"C0:57:4B:00:00:03 is another speaker")
    scanned, size, hits = scan_for_macs([file, other, tmp_path / "gone"], [MAC])
    assert (scanned, hits) == (2, ["records.sqlite3-wal"])
    assert size == 200 + len(spelling) + other.stat().st_size
    assert len(mac_spellings(MAC)) == 18


def test_a_stage_that_fails_its_check_is_reported() -> None:
    summary = _summary(
        devices=3,
        faults=False,
        collected={"OperationLogCollector": 10},
        by_category={"operation_logs": 4},
        kept=4,
        seen=3,
        read=3,
        upload={"sent": 5, "retried": 0, "purged": 0, "requests": 1},
        received=[{"record_id": str(i)} for i in range(4)],
        duplicates=0,
        scans=((3, 100, ["records.sqlite3-wal"]), (2, 50, [])),
        searched=(3, 18, 1),
        errors=[],
        gate_method="demo",
    )
    failed = {s["stage"]: s["detail"] for s in summary["stages"] if not s["ok"]}
    # 4 kept + 5 sent != 10 stored; a MAC in the WAL; 4 received for 5 acknowledged
    assert set(failed) == {"collected", "encrypted", "received"}
    assert "FOUND in records.sqlite3-wal" in failed["encrypted"]
