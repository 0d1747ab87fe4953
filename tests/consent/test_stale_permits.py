"""A permit another process withdrew stores nothing once the withdrawal returned (consent review).

Real parts: the ``wking`` CLI in a subprocess records the withdrawal while this process holds the
store and a gate that has not re-read the ledger (``watch=None``: only ``refresh()``; the default
rate limit leaves the same gap for up to ``WATCH_INTERVAL`` seconds). The store watches the
ledger itself, so the stale permit must not let a record in after the CLI returned.
"""

from __future__ import annotations

import asyncio

import pytest
from tests._waiting import until
from tests.consent._stale import kept, python, record, stale_permit, wking
from tests.store._hold import hold_writer

from wking_device.config import resolve_paths
from wking_device.consent import ledger_path
from wking_device.errors import ConsentError
from wking_device.store import open_store

_LIBRARY = """
from wking_device.collect import open_installation_gate
from wking_device.config import load_settings, resolve_paths
paths = resolve_paths()
gate = open_installation_gate(paths, load_settings(paths))
{action}
"""

_UPGRADE = """
from datetime import date
from wking_device.collect import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.policy import PolicyDocument, shipped_policies
newer = PolicyDocument(
    version="99.0", date=date(2099, 1, 1), text="x", significant=frozenset({"operation_logs"})
)
paths = resolve_paths()
policies = shipped_policies().with_document(newer)
open_installation_gate(paths, load_settings(paths), policies=policies)
"""

# What another process does, each returning before this process's gate re-read the ledger.
_ELSEWHERE = {
    "cli-withdraw": lambda: wking("consent", "withdraw", "--yes", "operation_logs"),
    "library-withdraw": lambda: python(_LIBRARY.format(action="gate.withdraw(['operation_logs'])")),
    "do-not-track-on": lambda: python(_LIBRARY.format(action=""), env={"DO_NOT_TRACK": "1"}),
    "policy-upgrade": lambda: python(_UPGRADE),
    "ledger-tampered": lambda: python(
        "import sys; open(sys.argv[1], 'ab').write(b'{}\\n')", str(ledger_path(resolve_paths()))
    ),
}
_SHREDS = {"cli-withdraw", "library-withdraw"}


@pytest.mark.parametrize("writer_process", [False, True], ids=["writer-thread", "writer-process"])
@pytest.mark.parametrize("elsewhere", sorted(_ELSEWHERE))
async def test_a_stale_permit_stores_nothing_once_another_process_stopped_consent(
    elsewhere: str, writer_process: bool
) -> None:
    paths, settings, permit, consent_id = stale_permit()
    async with open_store(paths, settings, writer_process=writer_process) as store:
        await store.append([record(consent_id)], permit)
        withdrawn = await asyncio.to_thread(_ELSEWHERE[elsewhere])
        assert withdrawn.returncode == 0, withdrawn.stderr
        with pytest.raises(ConsentError):
            await store.append([record(consent_id)], permit)
    assert permit.valid  # the gate never re-read the ledger: only the store can refuse
    expected = 0 if elsewhere in _SHREDS else 1  # Do Not Track and tampering shred nothing
    assert kept("operation_logs") == expected


async def test_a_writer_process_takes_no_stale_permit_while_the_writer_thread_is_busy() -> None:
    """The writer thread re-reads the ledger; batches it never sees go to the writer process."""
    paths, settings, permit, consent_id = stale_permit()
    async with open_store(paths, settings, writer_process=True) as store:
        await store.append([record(consent_id)], permit)  # the scope's key: writer thread
        appender = store._appender
        assert appender is not None
        await until(lambda: appender.ready, within=20.0)
        await store.append([record(consent_id)], permit)  # the writer process takes it
        release = hold_writer(store)  # busy (a long export, a sweep...): no look at the ledger
        try:
            withdrawn = await asyncio.to_thread(_ELSEWHERE["library-withdraw"])
            assert withdrawn.returncode == 0, withdrawn.stderr
            late = asyncio.ensure_future(store.append([record(consent_id)], permit))
            done, _ = await asyncio.wait({late}, timeout=2.0)
            if done:  # the writer process took it: it must have been refused
                with pytest.raises(ConsentError):
                    late.result()
        finally:
            release.set()
        if not late.done():  # the writer thread took it, after re-reading the ledger
            with pytest.raises(ConsentError):
                await late
    assert permit.valid
    assert kept("operation_logs") == 0
