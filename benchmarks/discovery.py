"""Benchmark: discover 100 simulated speakers, then connect and read all of them.

Budget (issue 2, 2 cores): all discovered within 1 s, all read within 5 s with the connection
limit, peak RSS under 120 MB.

Named baseline, measured in the same run on the same simulated world: **raw bleak** — bleak's
``BleakScanner`` and ``BleakClient`` used directly (no profile matching, no retries, no events,
no codec), reading the same Device Information and Battery characteristics under the same
concurrency limit. The ratio says what ``wking_device.ble`` costs over bleak itself.

Run: ``.venv/bin/python benchmarks/discovery.py [--speakers 100] [--limit 10] [--no-instant]``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from typing import Any

from bleak import BleakClient, BleakScanner

from wking_device.ble import discover, read_all
from wking_device.config import BleSettings
from wking_device.protocol import (
    BATTERY_LEVEL_UUID,
    FIRMWARE_REVISION_UUID,
    MANUFACTURER_NAME_UUID,
    MODEL_NUMBER_UUID,
    WKING_SERVICE_UUID,
)
from wking_device.sim import SimWorld


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _ours(world: SimWorld, count: int, limit: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    found = await discover(5.0, backend=world.backend, count=count)
    discovered = time.perf_counter() - started
    assert len(found) == count, f"discovered {len(found)} of {count}"
    started = time.perf_counter()
    settings = BleSettings(max_connections=limit)
    result = await read_all(found, backend=world.backend, limit=limit, settings=settings)
    read = time.perf_counter() - started
    assert result.ok, f"{len(result.errors)} reads failed: {next(iter(result.errors.values()))}"
    return discovered, read, result.peak_connections


async def _raw_bleak(world: SimWorld, count: int, limit: int) -> tuple[float, float]:
    seen: dict[str, object] = {}
    done = asyncio.Event()

    def detected(device: object, adv: object) -> None:
        seen[device.address] = device  # type: ignore[attr-defined]
        if len(seen) >= count:
            done.set()

    started = time.perf_counter()
    async with BleakScanner(
        detected, service_uuids=[WKING_SERVICE_UUID], backend=world.backend.scanner
    ):
        await asyncio.wait_for(done.wait(), 5.0)
    discovered = time.perf_counter() - started

    gate = asyncio.Semaphore(limit)

    async def one(device: object) -> None:
        async with gate, BleakClient(device, backend=world.backend.client) as client:  # type: ignore[arg-type]
            for uuid in (
                MANUFACTURER_NAME_UUID,
                MODEL_NUMBER_UUID,
                FIRMWARE_REVISION_UUID,
                BATTERY_LEVEL_UUID,
            ):
                await client.read_gatt_char(uuid)

    started = time.perf_counter()
    await asyncio.gather(*(one(d) for d in seen.values()))
    return discovered, time.perf_counter() - started


async def main(count: int, limit: int, instant: bool) -> None:
    print(f"{count} simulated speakers, connection limit {limit}, instant connect: {instant}")
    started = time.perf_counter()
    async with SimWorld.fleet(count, instant_connect=instant) as world:
        print(f"  world set-up            {time.perf_counter() - started:7.3f} s")
        disc, read, peak = await _ours(world, count, limit)
        rss = _peak_rss_mb()
        print(f"  wking: all discovered   {disc:7.3f} s   (budget 1 s)")
        print(f"  wking: all read         {read:7.3f} s   (budget 5 s, peak {peak} connections)")
        print(f"  peak RSS                {rss:7.1f} MB  (budget 120 MB)")
        raw_disc, raw_read = await _raw_bleak(world, count, limit)
        print(f"  raw bleak: discovered   {raw_disc:7.3f} s")
        print(f"  raw bleak: read         {raw_read:7.3f} s   (4 characteristics each)")
    print(f"  ratio discover wking/raw bleak  {disc / raw_disc:5.2f}")
    print(
        f"  ratio read     wking/raw bleak  {read / raw_read:5.2f}  (wking also reads vendor state)"
    )
    verdict = disc <= 1.0 and read <= 5.0 and rss < 120
    print(f"  within budget: {'yes' if verdict else 'NO'}")


def run(quick: bool = False) -> list[dict[str, Any]]:
    """For ``python -m benchmarks``: raw bleak runs before and after ours (paired)."""
    count, limit = 100, 10

    async def measure() -> tuple[
        tuple[float, float], tuple[float, float, int], tuple[float, float]
    ]:
        async with SimWorld.fleet(count, instant_connect=True) as world:
            first = await _raw_bleak(world, count, limit)
            ours = await _ours(world, count, limit)
            second = await _raw_bleak(world, count, limit)
        return first, ours, second

    first, (disc, read, _), second = asyncio.run(measure())
    rss = _peak_rss_mb()
    common = {"unit": "s", "better": "lower", "baseline": "raw bleak on the same world"}
    return [
        {
            **common,
            "name": "fleet.discover",
            "value": disc,
            "baseline_values": [first[0], second[0]],
            "budget": None,
            "detail": f"{count} simulated speakers; budget 1 s absolute",
        },
        {
            **common,
            "name": "fleet.read",
            "value": read,
            "baseline_values": [first[1], second[1]],
            "budget": 2.0,
            "detail": f"limit {limit}, instant connect; budget 5 s absolute; process peak RSS "
            f"{rss:.0f} MB",
        },
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", type=int, default=100)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--no-instant", action="store_true", help="wait for adverts to connect")
    args = parser.parse_args()
    asyncio.run(main(args.speakers, args.limit, not args.no_instant))
