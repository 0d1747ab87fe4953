"""Issue 12 finding 1: a withdrawal shreds a store's records whether or not the app attached a gate.

The store watches its installation's ledger itself (before every batch of work and while idle),
so the safe path is the only path: no ``store.attach(gate)`` is needed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from wking_device.collect import open_installation_gate
from wking_device.store import open_store

if TYPE_CHECKING:
    from collections.abc import Callable

    from wking_device.config import Paths, Settings
    from wking_device.consent import ConsentGate, Permit
    from wking_device.models import Record


async def test_withdrawal_in_the_same_process_shreds_at_once_without_attach(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
) -> None:
    async with open_store(paths, settings) as store:
        await store.append([make_record("device_info", model="X")], permit)
        assert len(await store.export(["device_info"])) == 1
        gate.withdraw(["device_info"])
        # the very next operation sees the withdrawal carried out
        assert await store.export(["device_info"]) == []
        assert (await store.stats()).shredded == 1


async def test_another_gates_withdrawal_shreds_an_idle_store_without_attach(
    paths: Paths,
    settings: Settings,
    gate: ConsentGate,
    permit: Permit,
    make_record: Callable[..., Record],
) -> None:
    async with open_store(paths, settings) as store:
        await store.append([make_record("diagnostics", x=1)], permit)
        # another program of the installation (its own gate object, its own ledger reader)
        other = open_installation_gate(paths, settings)
        other.withdraw(["diagnostics"])
        del gate

        async with asyncio.timeout(10):
            # the idle writer looks at the ledger on its own; stats() reads no ledger
            while (await store.stats()).shredded == 0:  # noqa: ASYNC110 - the writer thread has no event
                await asyncio.sleep(0.05)
        assert await store.export(["diagnostics"]) == []
