from __future__ import annotations

import itertools
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from wking_device.consent import GENESIS, Ledger
from wking_device.errors import LedgerTampered, StorageError, UsageError

KEY = b"k" * 32


@pytest.fixture(name="ledger_file")
def fixture_ledger_file(tmp_path: Path) -> Path:
    return tmp_path / "consent" / "ledger.jsonl"


def _fill(path: Path, count: int = 4, key: bytes = KEY) -> Ledger:
    ledger = Ledger(path, key)
    for index in range(count):
        ledger.append(
            "grant" if index % 2 == 0 else "withdraw",
            ["operation_logs"] if index % 3 else ["device_info", "operation_logs"],
            method="api",
            policy_version="1.1",
            policy_digest="sha256:00",
            region="EU",
        )
    return ledger


def test_appends_chain_and_verify(ledger_file: Path) -> None:
    ledger = _fill(ledger_file)
    entries = Ledger(ledger_file, KEY).load()
    assert [e.seq for e in entries] == [0, 1, 2, 3]
    assert entries[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in itertools.pairwise(entries))
    assert entries == ledger.entries
    assert len({e.id for e in entries}) == 4
    assert entries[0].time.endswith("Z")


def test_files_are_private(ledger_file: Path) -> None:
    _fill(ledger_file, 1)
    for path in (ledger_file, ledger_file.with_name("ledger.jsonl.head")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(ledger_file.parent.stat().st_mode) == 0o700


def test_short_key_is_refused(ledger_file: Path) -> None:
    with pytest.raises(UsageError):
        Ledger(ledger_file, b"short")


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _edit(line: bytes) -> bytes:
    obj = orjson.loads(line)
    obj["categories"] = ["location"]
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) + b"\n"


@pytest.mark.parametrize(
    ("name", "mutate", "entry"),
    [
        ("edit", lambda ls: [ls[0], _edit(ls[1]), *ls[2:]], 1),
        ("delete", lambda ls: [ls[0], *ls[2:]], 1),
        ("reorder", lambda ls: [ls[0], ls[2], ls[1], ls[3]], 1),
        ("truncate_entry", lambda ls: ls[:3], 3),
        ("truncate_mid_line", lambda ls: [*ls[:3], ls[3][:20]], 3),
        ("garbage", lambda ls: [*ls[:2], b"not json\n", *ls[3:]], 2),
        ("append_forged", lambda ls: [*ls, ls[-1]], None),
    ],
)
def test_tampering_is_detected(ledger_file: Path, name: str, mutate, entry) -> None:
    _fill(ledger_file)
    ledger_file.write_bytes(b"".join(mutate(_lines(ledger_file))))
    with pytest.raises(LedgerTampered) as info:
        Ledger(ledger_file, KEY).load()
    assert info.value.exit_code == 7
    if entry is not None:
        assert info.value.entry == entry, name


def test_deleting_the_whole_ledger_or_its_head_is_detected(ledger_file: Path) -> None:
    _fill(ledger_file)
    head = ledger_file.with_name("ledger.jsonl.head")
    saved = head.read_bytes()
    head.unlink()
    with pytest.raises(LedgerTampered, match="head is missing"):
        Ledger(ledger_file, KEY).load()
    head.write_bytes(saved)
    ledger_file.unlink()
    with pytest.raises(LedgerTampered, match="deleted"):
        Ledger(ledger_file, KEY).load()


def test_a_different_key_cannot_verify_or_forge(ledger_file: Path) -> None:
    _fill(ledger_file)
    with pytest.raises(LedgerTampered, match="authentication"):
        Ledger(ledger_file, b"x" * 32).load()
    with pytest.raises(LedgerTampered):
        Ledger(ledger_file, b"x" * 32).append(
            "grant", ["location"], method="api", policy_version="1", policy_digest="", region="EU"
        )


def test_crash_between_entry_and_head_is_completed(ledger_file: Path) -> None:
    _fill(ledger_file, 2)
    head = ledger_file.with_name("ledger.jsonl.head")
    old_head = head.read_bytes()
    _fill(ledger_file, 1)  # a third entry, then "crash": the head goes back
    head.write_bytes(old_head)
    entries = Ledger(ledger_file, KEY).load()
    assert len(entries) == 3
    assert orjson.loads(head.read_bytes())["count"] == 3


def test_torn_tail_beyond_the_head_is_cut(ledger_file: Path) -> None:
    _fill(ledger_file, 2)
    size = ledger_file.stat().st_size
    with ledger_file.open("ab") as file:
        file.write(b'{"categories":["loc')
    assert len(Ledger(ledger_file, KEY).load()) == 2
    assert ledger_file.stat().st_size == size


def test_other_processes_appends_are_chained_not_forked(ledger_file: Path) -> None:
    first = _fill(ledger_file, 1)
    _fill(ledger_file, 1)  # another writer
    first.append(
        "grant", ["device_info"], method="api", policy_version="1", policy_digest="", region="EU"
    )
    assert len(Ledger(ledger_file, KEY).load()) == 3


def test_two_processes_appending_at_once_do_not_corrupt(ledger_file: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from wking_device.consent import Ledger
        ledger = Ledger(Path({str(ledger_file)!r}), {KEY!r})
        for _ in range(25):
            ledger.append("grant", [sys.argv[1]], method="api", policy_version="1.1",
                          policy_digest="sha256:00", region="EU")
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, category])
        for category in ("operation_logs", "device_info")
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0
    entries = Ledger(ledger_file, KEY).load()
    assert len(entries) == 50
    assert [e.seq for e in entries] == list(range(50))


def test_crash_after_the_very_first_entry_is_completed(ledger_file: Path) -> None:
    ledger = _fill(ledger_file, 1)
    ledger._write_head(0, GENESIS)  # the state right after the first line, before its head
    assert len(Ledger(ledger_file, KEY).load()) == 1


def test_file_system_errors_become_storage_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    ledger = Ledger(blocker / "consent" / "ledger.jsonl", KEY)
    with pytest.raises(StorageError, match="cannot use the consent ledger") as info:
        ledger.append(
            "grant", ["location"], method="api", policy_version="1", policy_digest="", region="EU"
        )
    assert info.value.exit_code == 6
