"""Many speakers: 50 discovered and read in one test, the connection limit measured."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pytest

from wking_device.ble import ConnectionLimiter, Speaker, discover, limiter_for, read_all
from wking_device.errors import ConnectionFailed, DeviceNotFound, UsageError
from wking_device.models import OperationKind
from wking_device.sim import SimWorld

if TYPE_CHECKING:
    from tests.ble.conftest import Recorder

    from wking_device.ble import RetryPolicy
    from wking_device.config import BleSettings


async def test_fifty_speakers_discovered_and_all_read(recorder: Recorder) -> None:
    async with SimWorld.fleet(50, instant_connect=True, adv_interval_ms=50) as world:
        found = await discover(5.0, backend=world.backend, events=recorder.bus, count=50)
        assert len(found) == 50
        progress: list[str] = []
        result = await read_all(
            found,
            backend=world.backend,
            limit=8,
            events=recorder.bus,
            on_result=lambda address, _outcome: progress.append(address),
        )
        assert result.ok, result.errors
        assert len(result.infos) == 50
        assert sorted(progress) == sorted(s.address for s in world.speakers)
        assert 1 < result.peak_connections <= 8
        for sim in world.speakers:
            info = result.infos[sim.address]
            assert info.model == sim.spec.model_id
            assert info.volume == sim.state.volume
            assert info.battery == sim.state.battery_level
    assert len(recorder.of(OperationKind.INFO)) == 50


async def test_concurrency_limit_is_honoured_and_measured() -> None:
    async with SimWorld.fleet(12, instant_connect=True, adv_interval_ms=20) as world:
        found = await discover(3.0, backend=world.backend, count=12)
        peak_seen = 0

        async def sample() -> None:
            # measured on the simulated speakers' side: links actually up at each moment
            nonlocal peak_seen
            while True:
                peak_seen = max(peak_seen, sum(1 for s in world.speakers if s.connected))
                await asyncio.sleep(0.002)

        async def read_slowly(speaker: Speaker) -> object:
            await asyncio.sleep(0.1)  # hold the connection a while
            return await speaker.read_info()

        sampler = asyncio.create_task(sample())
        result = await read_all(found, backend=world.backend, limit=3, read=read_slowly)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        assert result.ok
        assert peak_seen == 3
        assert result.peak_connections == 3
        # sessions sharing an adapter share its limiter
        shared = limiter_for(world.backend, 2)
        assert limiter_for(world.backend, 99) is shared
        assert shared.limit == 2


async def test_one_failure_does_not_cancel_the_others(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    async with SimWorld.fleet(4, adv_interval_ms=20) as world:
        found = await discover(2.0, backend=world.backend, count=4)
        # Every attempt aborted: fails fast. (A non-connectable speaker would hold the adapter's
        # one pending connection for a whole connect timeout per attempt, delaying the others,
        # as on a real controller.)
        world.speakers[0].faults.abort_connect_attempts = frozenset(range(1, 10))
        targets = [*found, "C0:57:4B:77:77:77"]
        # the absent one is not found when the scan ends: 1 s, plenty for the present ones
        # (already found) and quick
        settings = fast_settings.replace(scan_timeout=1.0)
        result = await read_all(targets, backend=world.backend, settings=settings, retry=fast_retry)
        assert sorted(result.infos) == sorted(s.address for s in world.speakers[1:])
        assert isinstance(result.errors[world.speakers[0].address], ConnectionFailed)
        assert isinstance(result.errors["C0:57:4B:77:77:77"], DeviceNotFound)
        assert not result.ok


async def test_limiter_counts_and_rejects_misuse() -> None:
    limiter = ConnectionLimiter(2)
    async with limiter.slot(), limiter.slot():
        assert limiter.active == 2
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        assert not waiter.done()
        assert limiter.waiting == 1
    await waiter
    assert limiter.active == 1
    assert limiter.peak == 2
    limiter.release()
    with pytest.raises(UsageError, match="without acquire"):
        limiter.release()


async def test_addresses_are_resolved_with_one_shared_scan(recorder: Recorder) -> None:
    async with SimWorld.fleet(3, adv_interval_ms=20) as world:
        addresses = [s.address.lower() for s in world.speakers]
        result = await read_all(addresses, backend=world.backend, events=recorder.bus)
        assert result.ok
        assert sorted(result.infos) == sorted(s.address for s in world.speakers)
    assert len(recorder.of(OperationKind.SCAN)) == 1
