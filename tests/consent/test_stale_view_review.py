"""Review of the store's own ledger check (review22): its view must be fresh at each flush.

Real parts: the library in a subprocess records the withdrawal while this process's writer thread
is busy with a queued call (an export, a sweep...). An append queued behind that call is written
in the same round of the writer, after the withdrawal returned: it must be refused then.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests._waiting import until
from tests.consent._stale import kept, python, record, stale_permit
from tests.store._hold import hold_writer

from wking_device.cli import cli
from wking_device.collect import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.consent import ConsentGate
from wking_device.errors import ConsentError
from wking_device.store import open_store
from wking_device.store._batches import _Call

_WITHDRAW = """
from wking_device.collect import open_installation_gate
from wking_device.config import load_settings, resolve_paths
paths = resolve_paths()
open_installation_gate(paths, load_settings(paths)).withdraw(["operation_logs"])
"""


async def test_an_append_queued_behind_a_long_call_is_checked_against_the_ledger_then() -> None:
    paths, settings, permit, consent_id = stale_permit()
    async with open_store(paths, settings, writer_process=False) as store:
        await store.append([record(consent_id)], permit)  # the scope's key exists
        first = hold_writer(store)
        # queued together behind the held call: the writer takes both in its next round
        started, second = threading.Event(), threading.Event()

        def busy() -> None:
            started.set()
            second.wait(30)

        store._enqueue(_Call(busy))
        late = asyncio.ensure_future(store.append([record(consent_id)], permit))
        await until(lambda: store._queue.qsize() == 2, within=10.0)  # both wait behind it
        first.set()
        try:
            assert await asyncio.to_thread(started.wait, 30)  # the round began: ledger looked at
            withdrawn = await asyncio.to_thread(python, _WITHDRAW)
            assert withdrawn.returncode == 0, withdrawn.stderr
        finally:
            second.set()
        with pytest.raises(ConsentError):
            await late
    assert permit.valid
    assert kept("operation_logs") == 0


_HOLD_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.readline()
st = os.stat(sys.argv[2])
os.utime(sys.argv[2], ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # a benign touch
"""


def _lock_waiters() -> int:
    with Path("/proc/locks").open(encoding="ascii") as locks:
        return sum("->" in line for line in locks)


async def test_a_ledger_changed_while_it_is_read_keeps_no_batch_off_the_writer_process() -> None:
    """The ledger changes between the stamp the writer thread takes and its read (another
    process's grant, a touch): batches must go to the writer process again afterwards."""
    granted = CliRunner().invoke(cli, ["consent", "grant", "--yes", "operation_logs"])
    assert granted.exit_code == 0, granted.output
    paths = resolve_paths()
    settings = load_settings(paths)
    ledger = open_installation_gate(paths, settings).ledger
    gate = ConsentGate(ledger, watch=None)
    permit = gate.permit(["operation_logs"])
    consent_id = permit.consent_ids["operation_logs"]
    async with open_store(paths, settings, writer_process=True) as store:
        await store.append([record(consent_id)], permit)  # the scope's key: writer thread
        appender = store._appender
        assert appender is not None
        await until(lambda: appender.ready, within=20.0)
        holder = subprocess.Popen(  # noqa: ASYNC220 - started once, read from a thread
            [sys.executable, "-c", _HOLD_LOCK, str(ledger.lock_path), str(ledger.path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdin is not None
            assert await asyncio.to_thread(holder.stdout.readline) == "locked\n"
            st = ledger.path.stat()
            os.utime(ledger.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
            waiting = _lock_waiters()
            first = asyncio.ensure_future(store.append([record(consent_id)], permit))
            # the writer thread took the ledger's stamp and waits for the lock to read it
            await until(lambda: _lock_waiters() > waiting, within=20.0)
            holder.stdin.write("go\n")
            holder.stdin.flush()
            await first
        finally:
            holder.communicate(timeout=30)
        await store.append([record(consent_id)], permit)  # the writer thread looks again
        release = hold_writer(store)
        try:  # the writer process takes the batch while the writer thread is busy
            await asyncio.wait_for(store.append([record(consent_id)], permit), 20.0)
        finally:
            release.set()


async def test_a_tampered_ledger_refuses_appends_saying_so_in_one_line() -> None:
    granted = CliRunner().invoke(cli, ["consent", "grant", "--yes", "operation_logs"])
    assert granted.exit_code == 0, granted.output
    paths = resolve_paths()
    settings = load_settings(paths)
    ledger = open_installation_gate(paths, settings).ledger
    permit = ConsentGate(ledger, watch=None).permit(["operation_logs"])
    consent_id = permit.consent_ids["operation_logs"]
    async with open_store(paths, settings, writer_process=False) as store:
        await store.append([record(consent_id)], permit)
        with ledger.path.open("ab") as tampered:
            tampered.write(b"{}\n")
        with pytest.raises(ConsentError) as refused:
            await store.append([record(consent_id)], permit)
    message = str(refused.value)
    assert "fails verification" in message
    assert "recorded in the consent ledger" not in message
    assert "\n" not in message
    assert "Traceback" not in message
