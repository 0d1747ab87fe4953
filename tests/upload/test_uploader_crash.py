"""Crash tests: an uploading process is SIGKILLed mid-drain; a restart delivers everything once.

The child claims batches, sends them to the reference receiver (running in this process, over TLS
on 127.0.0.1) and acknowledges them; it is killed while batches are claimed and in flight. The
store makes claimed rows pending again when it is reopened, so a new drain re-sends them and the
receiver's de-duplication by ``wking.record_id`` leaves exactly one copy of each record.

The uploader's delete after an acknowledgement commits without an fsync of its own
(``RecordStore.ack(..., sync=False)``): it must survive a killed process, and when a power loss
undoes it (simulated by putting back the store's files as they were before the drain) the
records are re-sent and stored once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from typing import TYPE_CHECKING

from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.models import Record
from wking_device.receiver import FaultPlan, Receiver
from wking_device.store import open_store
from wking_device.upload import UploadTarget, open_uploader, parse_endpoint
from wking_device.upload._tls import TLSOptions

if TYPE_CHECKING:
    from pathlib import Path

CHILD = r"""
import asyncio, sys
from pathlib import Path
from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.store import open_store
from wking_device.upload import UploadTarget, open_uploader, parse_endpoint
from wking_device.upload._tls import TLSOptions

async def main() -> None:
    paths = resolve_paths(sys.argv[1])
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    store = open_store(paths, settings)
    target = UploadTarget(
        endpoint=parse_endpoint(sys.argv[2]),
        tls=TLSOptions(ca_file=Path(sys.argv[3])),
        batch_size=50,
        concurrency=3,
    )

    def progress(counters) -> None:
        sys.stdout.write(f"sent {counters.sent}\n")
        sys.stdout.flush()

    uploader = open_uploader(
        target, store=store, gate=gate, data_dir=paths.data_dir, progress=progress
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await uploader.drain()
    sys.stdout.write("finished\n")
    sys.stdout.flush()

asyncio.run(main())
"""

TOTAL = 3000


async def _fill(home: Path) -> set[str]:
    paths = resolve_paths(home)
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    gate.grant(["operation_logs"], method="api")
    permit = gate.permit(["operation_logs"])
    records = [
        Record(
            category="operation_logs",
            consent_id=permit.consent_ids["operation_logs"],
            policy_version=permit.policy_version,
            body={"i": i, "pad": "z" * 100},
        )
        for i in range(TOTAL)
    ]
    async with open_store(paths, settings) as store:
        for start in range(0, TOTAL, 500):
            await store.append(records[start : start + 500], permit)
    return {r.record_id for r in records}


async def test_killed_mid_drain_then_restarted_delivers_everything_once(
    home: Path, tmp_path: Path
) -> None:
    ids = await _fill(home)
    # 20 ms per request: the drain takes well over a second, the kill lands in the middle
    async with Receiver(tmp_path / "rx", fault_plan=FaultPlan(latency=0.02)) as rx:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            str(home),
            rx.endpoint,
            str(rx.ca_file),
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert child.stdout is not None
        sent = 0
        async with asyncio.timeout(60):
            while sent < 500:
                line = (await child.stdout.readline()).decode()
                assert line, "the child ended before it was killed"
                assert line.strip() != "finished"
                if line.startswith("sent "):
                    sent = int(line.split()[1])
        child.send_signal(signal.SIGKILL)
        await child.wait()
        assert child.returncode == -signal.SIGKILL

        # after the crash: some records were acknowledged and deleted, the rest is still here
        paths = resolve_paths(home)
        settings = load_settings(paths)
        gate = open_installation_gate(paths, settings)
        async with open_store(paths, settings) as store:
            stats = await store.stats()
            assert stats.claimed == 0  # the dead writer's claims are pending again
            assert 0 < stats.pending < TOTAL
            uploader = open_uploader(
                UploadTarget(
                    endpoint=parse_endpoint(rx.endpoint), tls=TLSOptions(ca_file=rx.ca_file)
                ),
                store=store,
                gate=gate,
                data_dir=paths.data_dir,
            )
            async with uploader:
                await uploader.drain()
            assert (await store.stats()).total == 0
        received = [row["record_id"] for row in rx.export()]
    assert len(received) == len(set(received)) == TOTAL
    assert set(received) == ids


ACK_CHILD = r"""
import asyncio, sys
from wking_device.config import load_settings, resolve_paths
from wking_device.store import open_store

async def main() -> None:
    paths = resolve_paths(sys.argv[1])
    store = open_store(paths, load_settings(paths))
    rows = await store.claim_opened(100)
    deleted = await store.ack([row.record_id for row in rows], sync=False)
    sys.stdout.write(f"acked {deleted}\n")
    sys.stdout.flush()
    await asyncio.sleep(3600)  # killed here, the store never closed

asyncio.run(main())
"""


async def test_an_unsynced_ack_survives_a_killed_process(home: Path) -> None:
    await _fill(home)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", ACK_CHILD, str(home), stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    async with asyncio.timeout(60):
        line = (await child.stdout.readline()).decode().strip()
    child.send_signal(signal.SIGKILL)
    await child.wait()
    assert line == "acked 100"
    paths = resolve_paths(home)
    async with open_store(paths, load_settings(paths)) as store:
        stats = await store.stats()
    assert stats.total == stats.pending == TOTAL - 100


async def test_acks_undone_by_a_power_loss_are_resent_and_stored_once(
    home: Path, tmp_path: Path
) -> None:
    ids = await _fill(home)
    paths = resolve_paths(home)
    settings = load_settings(paths)
    # the store's files before the drain: what a power loss leaves if no delete reached the disk
    before = tmp_path / "before"
    shutil.copytree(paths.data_dir, before)
    async with Receiver(tmp_path / "rx") as rx:
        target = UploadTarget(
            endpoint=parse_endpoint(rx.endpoint), tls=TLSOptions(ca_file=rx.ca_file)
        )
        gate = open_installation_gate(paths, settings)
        async with open_store(paths, settings) as store:
            async with open_uploader(target, store=store, gate=gate, data_dir=paths.data_dir) as up:
                assert (await up.drain()).counters.sent == TOTAL
            assert (await store.stats()).total == 0
            connection = store._conn  # the setting appends rely on
            assert connection.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
        shutil.rmtree(paths.data_dir)
        shutil.copytree(before, paths.data_dir)
        gate = open_installation_gate(paths, settings)
        async with open_store(paths, settings) as store:
            assert (await store.stats()).pending == TOTAL
            async with open_uploader(target, store=store, gate=gate, data_dir=paths.data_dir) as up:
                assert (await up.drain()).counters.sent == TOTAL
            assert (await store.stats()).total == 0
        assert rx.stats.stored == TOTAL
        assert rx.stats.duplicates == TOTAL
        received = [row["record_id"] for row in rx.export()]
    assert len(received) == len(set(received)) == TOTAL
    assert set(received) == ids


AHEAD_CHILD = r"""
import asyncio, sys
from pathlib import Path
from wking_device.collect._install import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.store import open_store
from wking_device.upload import UploadTarget, open_uploader, parse_endpoint
from wking_device.upload._tls import TLSOptions

async def main() -> None:
    paths = resolve_paths(sys.argv[1])
    settings = load_settings(paths)
    gate = open_installation_gate(paths, settings)
    store = open_store(paths, settings)
    real_claim = store.claim_opened
    claimed = 0

    async def claim(n, **kw):
        nonlocal claimed
        rows = await real_claim(n, **kw)
        claimed += len(rows)
        sys.stdout.write(f"claimed {claimed}\n")
        sys.stdout.flush()
        return rows

    store.claim_opened = claim
    target = UploadTarget(
        endpoint=parse_endpoint(sys.argv[2]),
        tls=TLSOptions(ca_file=Path(sys.argv[3])),
        batch_size=100,
        concurrency=2,
    )
    uploader = open_uploader(target, store=store, gate=gate, data_dir=paths.data_dir)
    await uploader.drain()
    sys.stdout.write("finished\n")
    sys.stdout.flush()

asyncio.run(main())
"""


async def test_killed_with_a_batch_claimed_ahead_loses_nothing(home: Path, tmp_path: Path) -> None:
    from _upload_helpers import bare_server  # noqa: PLC0415
    from aiohttp import web  # noqa: PLC0415

    ids = await _fill(home)
    held = asyncio.Event()
    arrived = asyncio.Event()

    async def hold(_: web.Request) -> web.StreamResponse:
        arrived.set()
        await held.wait()  # never answered before the kill: nothing is acknowledged
        return web.Response(body=b"", content_type="application/x-protobuf")

    async with bare_server(tmp_path, hold) as server:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            AHEAD_CHILD,
            str(home),
            server.url,
            str(server.ca_file),
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        claimed = 0
        async with asyncio.timeout(60):
            # two batches in flight and a third claimed and encoded behind them
            while claimed < 300:
                line = (await child.stdout.readline()).decode()
                assert line.startswith("claimed "), line
                claimed = int(line.split()[1])
            while len(server.requests) < 2:
                arrived.clear()
                if len(server.requests) < 2:
                    await arrived.wait()
        child.send_signal(signal.SIGKILL)
        await child.wait()
        held.set()
    assert claimed == 300
    paths = resolve_paths(home)
    settings = load_settings(paths)
    async with open_store(paths, settings) as store:
        stats = await store.stats()
        assert (stats.total, stats.pending, stats.claimed) == (TOTAL, TOTAL, 0)
    async with Receiver(tmp_path / "rx") as rx:
        gate = open_installation_gate(paths, settings)
        async with open_store(paths, settings) as store:
            target = UploadTarget(
                endpoint=parse_endpoint(rx.endpoint), tls=TLSOptions(ca_file=rx.ca_file)
            )
            async with open_uploader(target, store=store, gate=gate, data_dir=paths.data_dir) as up:
                assert (await up.drain()).counters.sent == TOTAL
        received = [row["record_id"] for row in rx.export()]
    assert sorted(received) == sorted(ids)
