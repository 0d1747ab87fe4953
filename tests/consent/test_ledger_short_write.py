"""A ledger append the file system only partly wrote fails with StorageError (consent review).

``os.write`` may write less than asked without raising (a file-size limit, a disk filling up):
the append went on, wrote a head counting the torn entry and returned it as recorded; every
later load then reported the ledger as truncated (tampered), and the installation stayed closed
until ``wking consent reset``. Real files in a subprocess with ``RLIMIT_FSIZE`` just past the
ledger's size.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from wking_device.consent import ConsentGate, Ledger

KEY = b"s" * 32

_APPEND_PAST_THE_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from wking_device.consent import ConsentGate, Ledger
    from wking_device.errors import StorageError

    path = Path(sys.argv[1])
    gate = ConsentGate(Ledger(path, b"s" * 32))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = path.stat().st_size + 40  # the next line is longer: written in part
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        gate.withdraw(["device_info"])
    except StorageError as exc:
        print("refused:", exc)
    else:
        print("recorded")
    """
)


def _refused(script: str, path: Path) -> str:
    """Run ``script`` on the ledger at ``path`` in a subprocess; return the refusal it printed."""
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused:"), result.stdout
    return result.stdout.strip()


def test_a_partly_written_entry_is_refused_and_the_ledger_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "consent" / "ledger.jsonl"
    ConsentGate(Ledger(path, KEY)).grant(["device_info"])
    assert "\n" not in _refused(_APPEND_PAST_THE_LIMIT, path)
    gate = ConsentGate(Ledger(path, KEY))
    assert gate.tampered is None
    assert [entry.event for entry in gate.history()] == ["grant"]
    assert gate.state("device_info").granted  # the withdrawal was refused, not half-recorded
    gate.withdraw(["device_info"])  # and the next append works
    assert not ConsentGate(Ledger(path, KEY)).state("device_info").granted


_REPAIR_PAST_THE_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    from pathlib import Path
    from wking_device.consent import Ledger
    from wking_device.errors import StorageError

    path = Path(sys.argv[1])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = path.with_name(path.name + ".head").stat().st_size // 2  # the head is written in part
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        Ledger(path, b"s" * 32).load()  # completes the interrupted append: writes the head
    except StorageError as exc:
        print("refused:", exc)
    else:
        print("repaired")
    """
)


def test_a_head_written_in_part_leaves_the_old_head_whole(tmp_path: Path) -> None:
    # A head cut short (a full disk, a file-size limit) was renamed over the good head: every
    # later load read a malformed head, reported the ledger tampered (exit 7) and collection
    # stopped. The head is tiny, so a 1 MiB tmpfs cannot cut it short (a page is all or
    # nothing there); RLIMIT_FSIZE does it, in a subprocess.
    path = tmp_path / "consent" / "ledger.jsonl"
    head = path.with_name(path.name + ".head")
    gate = ConsentGate(Ledger(path, KEY))
    gate.grant(["device_info"])
    old_head = head.read_bytes()
    gate.withdraw(["device_info"])
    head.write_bytes(old_head)  # an append that wrote its entry and stopped before its head
    _refused(_REPAIR_PAST_THE_LIMIT, path)
    assert head.read_bytes() == old_head
    assert sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")) == []
    gate = ConsentGate(Ledger(path, KEY))  # without the limit the repair completes
    assert gate.tampered is None
    assert [entry.event for entry in gate.history()] == ["grant", "withdraw"]
    assert not gate.state("device_info").granted
