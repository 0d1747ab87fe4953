"""Crash test: a writer process is SIGKILLed at random points; nothing it acknowledged is lost."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from typing import TYPE_CHECKING

import pytest

from wking_device.store import open_store

if TYPE_CHECKING:
    from pathlib import Path

CHILD = r"""
import asyncio, sys
from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import Record
from wking_device.store import open_store

async def main() -> None:
    paths = resolve_paths(sys.argv[1])
    settings = load_settings(paths)
    permit = open_installation_gate(paths, settings).permit(["operation_logs"])
    store = open_store(paths, settings)
    out = sys.stdout
    out.write("ready\n")
    out.flush()

    async def producer(k: int) -> None:
        i = 0
        while True:
            records = [
                Record(
                    category="operation_logs",
                    consent_id=permit.consent_ids["operation_logs"],
                    policy_version=permit.policy_version,
                    body={"k": k, "i": i, "pad": "z" * 200},
                )
                for _ in range(1 + i % 5)
            ]
            await store.append(records, permit)
            out.write("".join(f"ok {r.record_id}\n" for r in records))
            out.flush()
            i += 1
            if i % 7 == 0:
                claimed = await store.claim(3)
                if claimed:
                    # announced before the ack: it may legitimately be gone after a kill
                    out.write(f"acking {claimed[0].record_id}\n")
                    out.flush()
                    await store.ack([claimed[0].record_id])

    await asyncio.gather(*(producer(k) for k in range(8)))

asyncio.run(main())
"""

ITERATIONS = 20


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_sigkill_never_loses_an_acknowledged_record(
    paths, settings, gate, tmp_path: Path
) -> None:
    del gate  # consent granted and key store created before the first child
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(4)
    acknowledged: set[str] = set()
    acked: set[str] = set()
    for _ in range(ITERATIONS):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            str(paths.home),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert child.stdout is not None
        first = await asyncio.wait_for(child.stdout.readline(), timeout=30)
        assert first == b"ready\n"
        await asyncio.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        rest = await asyncio.wait_for(child.stdout.read(), timeout=30)
        await asyncio.wait_for(child.wait(), timeout=30)
        lines = rest.split(b"\n")[:-1]  # the last piece is an incomplete line (or empty)
        for line in lines:
            kind, _, record_id = line.decode().partition(" ")
            (acknowledged if kind == "ok" else acked).add(record_id)
        store = open_store(paths, settings)
        try:
            kept = {r.record_id for r in await store.export()}
            stats = await store.stats()
        finally:
            await store.aclose()
        missing = acknowledged - acked - kept
        assert not missing, f"{len(missing)} acknowledged records lost"
        assert stats.quarantined == 0
        assert stats.claimed == 0  # claims of the killed writer became pending
    assert len(acknowledged) > 100  # the kills did not all land before any work
