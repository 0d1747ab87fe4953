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


def test_a_partly_written_entry_is_refused_and_the_ledger_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "consent" / "ledger.jsonl"
    ConsentGate(Ledger(path, KEY)).grant(["device_info"])
    result = subprocess.run(
        [sys.executable, "-c", _APPEND_PAST_THE_LIMIT, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("refused:"), result.stdout
    assert "\n" not in result.stdout.strip()
    gate = ConsentGate(Ledger(path, KEY))
    assert gate.tampered is None
    assert [entry.event for entry in gate.history()] == ["grant"]
    assert gate.state("device_info").granted  # the withdrawal was refused, not half-recorded
    gate.withdraw(["device_info"])  # and the next append works
    assert not ConsentGate(Ledger(path, KEY)).state("device_info").granted
