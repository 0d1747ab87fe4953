"""A ``SpeakerScanner`` (and a ``SpeakerTracker``) started twice at once runs once (review).

``start()`` returns at once when the scanner runs, but it only counted as running after its
bleak scanners had started: a second ``start()`` meanwhile (two tasks entering ``async with`` on
one scanner) started a second set and forgot the first, which ``stop()`` never stopped — the
radio scanned on and its advertisements still reached the stopped scanner. Likewise a
``stop()`` called while ``start()`` was under way did nothing, and the scan then started.
"""

from __future__ import annotations

import asyncio

import pytest
from tests._waiting import until

from wking_device.ble import SpeakerScanner, SpeakerTracker

pytest.importorskip("bumble")
from wking_device.sim import SimWorld


async def _nothing_more_heard(scanner: SpeakerScanner, world: SimWorld) -> None:
    """Fail if ``scanner`` hears anything while another scanner hears several advertisements."""
    heard = scanner.adverts
    async with SpeakerScanner(backend=world.backend) as clock:
        await until(lambda: clock.adverts >= 5)
    assert scanner.adverts == heard


async def test_two_starts_at_once_are_stopped_by_one_stop() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        scanner = SpeakerScanner(backend=world.backend)
        await asyncio.gather(scanner.start(), scanner.start())
        await until(lambda: scanner.adverts >= 1)
        await scanner.stop()
        await _nothing_more_heard(scanner, world)


async def test_a_stop_during_the_start_stops_the_scan() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        scanner = SpeakerScanner(backend=world.backend)
        starting = asyncio.ensure_future(scanner.start())
        await asyncio.sleep(0)  # the start is under way
        await scanner.stop()  # called after start(): the scanner ends stopped
        await starting
        await _nothing_more_heard(scanner, world)


def _expiry_checks() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name() == "wking-tracker-expiry" and not task.done()
    ]


async def test_a_tracker_started_twice_at_once_leaves_no_check_running_after_stop() -> None:
    # each start() made its own expiry check and kept the last: the first ran for ever
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        tracker = SpeakerTracker(backend=world.backend)
        await asyncio.gather(tracker.start(), tracker.start())
        assert len(_expiry_checks()) == 1
        await tracker.stop()
        assert _expiry_checks() == []


async def test_a_tracker_stopped_during_its_start_ends_stopped() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        tracker = SpeakerTracker(backend=world.backend)
        starting = asyncio.ensure_future(tracker.start())
        await asyncio.sleep(0)  # the start is under way
        await tracker.stop()
        await starting
        assert _expiry_checks() == []
