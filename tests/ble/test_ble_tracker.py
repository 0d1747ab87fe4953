"""Availability tracking: appear, change and unavailable, against the simulator and a set clock."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import pytest
from bleak.backends.device import BLEDevice

from wking_device.ble import (
    AvailabilityEvent,
    DiscoveredSpeaker,
    SpeakerAppeared,
    SpeakerChanged,
    SpeakerTracker,
    SpeakerUnavailable,
)
from wking_device.errors import UsageError
from wking_device.sim import SimWorld

if TYPE_CHECKING:
    from wking_device.ble import EventStream

ADDRESS = "C0:57:4B:00:00:01"


def _seen(rssi: int = -60, name: str | None = "W-KING X10 0001") -> DiscoveredSpeaker:
    return DiscoveredSpeaker(
        address=ADDRESS,
        name=name,
        rssi=rssi,
        model="x10",
        device=BLEDevice(ADDRESS, name, None),
    )


async def _next(stream: EventStream[AvailabilityEvent], kind: type) -> object:
    """The next event of ``kind`` on the stream (others are skipped), within 5 s."""
    async with asyncio.timeout(5):
        async for event in stream:
            if isinstance(event, kind):
                return event
    raise AssertionError(f"the stream ended before a {kind.__name__}")


# --- the rules, with time set by the test --------------------------------------------------------


def test_unavailable_after_n_learned_intervals() -> None:
    tracker = SpeakerTracker(missed_intervals=5, min_timeout=0.1, max_timeout=60.0)
    for i in range(4):
        tracker.observe(_seen(), now=10.0 + i * 0.2)
    speaker = tracker.speakers[ADDRESS]
    assert speaker.interval == pytest.approx(0.2)
    assert speaker.adverts == 4
    assert tracker.timeout_for(speaker) == pytest.approx(1.0)  # 5 intervals of 0.2 s
    assert tracker.expire(now=10.6 + 0.99) == []
    gone = tracker.expire(now=10.6 + 1.01)
    assert len(gone) == 1
    assert gone[0].speaker.available is False
    assert gone[0].silent_s == pytest.approx(1.01)
    assert tracker.available() == []
    assert ADDRESS in tracker.speakers  # remembered beyond its availability
    assert tracker.expire(now=100.0) == []  # told once


def test_interval_is_the_shortest_gap_so_missed_adverts_do_not_stretch_it() -> None:
    tracker = SpeakerTracker(missed_intervals=3, min_timeout=0.01, max_timeout=60.0)
    # 100 ms advertising with two advertisements lost and one seen twice (scan response)
    for at in (0.0, 0.1, 0.4, 0.401, 0.5, 0.8):
        tracker.observe(_seen(), now=at)
    assert tracker.speakers[ADDRESS].interval == pytest.approx(0.1)


def test_timeout_is_clamped_and_unlearned_speakers_wait_for_the_ceiling() -> None:
    tracker = SpeakerTracker(missed_intervals=10, min_timeout=2.0, max_timeout=30.0)
    tracker.observe(_seen(), now=0.0)
    assert tracker.speakers[ADDRESS].interval is None
    assert tracker.timeout_for(tracker.speakers[ADDRESS]) == 30.0
    assert tracker.expire(now=29.0) == []
    assert len(tracker.expire(now=31.0)) == 1
    fast = SpeakerTracker(missed_intervals=10, min_timeout=2.0, max_timeout=30.0)
    fast.observe(_seen(), now=0.0)
    fast.observe(_seen(), now=0.02)  # 20 ms: 10 intervals are 0.2 s, below the floor
    assert fast.timeout_for(fast.speakers[ADDRESS]) == 2.0
    slow = SpeakerTracker(missed_intervals=10, min_timeout=2.0, max_timeout=30.0)
    slow.observe(_seen(), now=0.0)
    slow.observe(_seen(), now=10.0)
    assert slow.timeout_for(slow.speakers[ADDRESS]) == 30.0


async def test_events_appear_change_unavailable_and_return_in_order() -> None:
    tracker = SpeakerTracker(missed_intervals=2, min_timeout=0.1, max_timeout=60.0, rssi_step=5)
    called: list[AvailabilityEvent] = []
    got = asyncio.Event()
    tracker.subscribe(lambda event: (called.append(event), got.set()))
    async with tracker.events() as stream:
        tracker.observe(_seen(rssi=-60), now=0.0)
        tracker.observe(_seen(rssi=-63), now=0.1)  # under the step: no event
        tracker.observe(_seen(rssi=-66), now=0.2)  # 6 dB since the last event: a change
        tracker.observe(_seen(rssi=-66, name="Kitchen"), now=0.3)
        tracker.observe(_seen(rssi=-66, name=None), now=0.4)  # a passive report keeps the name
        tracker.expire(now=0.61)
        tracker.observe(_seen(rssi=-50, name=None), now=5.0)
        events = [await anext(stream) for _ in range(5)]
    assert isinstance(events[0], SpeakerAppeared)
    assert not events[0].returned
    assert isinstance(events[1], SpeakerChanged)
    assert events[1].changed == ("rssi",)
    assert events[1].speaker.rssi == -66
    assert isinstance(events[2], SpeakerChanged)
    assert events[2].changed == ("name",)
    assert events[2].speaker.name == "Kitchen"
    assert isinstance(events[3], SpeakerUnavailable)
    assert isinstance(events[4], SpeakerAppeared)
    assert events[4].returned
    assert events[4].speaker.name == "Kitchen"
    async with asyncio.timeout(5):
        while len(called) < 5:
            got.clear()
            await got.wait()
    assert called == events


def test_bad_bounds_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="exceeds"):
        SpeakerTracker(min_timeout=10.0, max_timeout=5.0)
    with pytest.raises(UsageError):
        SpeakerTracker(missed_intervals=0)


@pytest.mark.parametrize(
    "argument", ["missed_intervals", "min_timeout", "max_timeout", "rssi_step", "check_every"]
)
@pytest.mark.parametrize("value", ["x", None, True, float("nan"), [1]])
def test_a_bound_that_is_not_a_number_is_a_usage_error_naming_it(
    argument: str, value: object
) -> None:
    # "x" was a TypeError from inside the constructor; nan and True were accepted
    if argument == "check_every" and value is None:
        return  # None is check_every's default (a quarter of min_timeout)
    with pytest.raises(UsageError, match=argument):
        SpeakerTracker(**{argument: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1.0, float("inf")])
def test_check_every_must_be_a_positive_finite_number(value: float) -> None:
    # 0 was accepted and made the checker a busy loop
    with pytest.raises(UsageError, match="check_every"):
        SpeakerTracker(check_every=value)


# --- against the simulator ----------------------------------------------------------------------


async def test_a_speaker_that_stops_advertising_becomes_unavailable() -> None:
    async with (
        SimWorld.fleet(2, adv_interval_ms=20) as world,
        SpeakerTracker(
            backend=world.backend, missed_intervals=5, min_timeout=0.15, max_timeout=10.0
        ) as tracker,
        tracker.events() as stream,
    ):
        gone, stays = world.speakers
        appeared = {(await _next(stream, SpeakerAppeared)).speaker.address for _ in range(2)}  # type: ignore[attr-defined]
        assert appeared == {gone.address, stays.address}
        async with asyncio.timeout(5):
            while tracker.speakers[gone.address].interval is None:  # noqa: ASYNC110 - no event for it
                await asyncio.sleep(0.02)
        learned = tracker.speakers[gone.address].interval
        assert learned is not None
        assert learned == pytest.approx(0.02, abs=0.015)
        gone.faults.in_range = False  # the simulator's control: no more advertisements
        event = await _next(stream, SpeakerUnavailable)
        assert isinstance(event, SpeakerUnavailable)
        assert event.speaker.address == gone.address
        assert event.timeout_s == pytest.approx(0.15)  # 5 x 20 ms is under the floor
        assert event.silent_s > event.timeout_s
        assert [s.address for s in tracker.available()] == [stays.address]
        gone.faults.in_range = True
        back = await _next(stream, SpeakerAppeared)
        assert isinstance(back, SpeakerAppeared)
        assert back.returned
        assert back.speaker.address == gone.address


async def test_a_speaker_whose_rssi_moves_is_a_change() -> None:
    async with (
        SimWorld.fleet(1, adv_interval_ms=20) as world,
        SpeakerTracker(backend=world.backend, rssi_step=5) as tracker,
        tracker.events() as stream,
    ):
        sim = world.speakers[0]
        await _next(stream, SpeakerAppeared)
        sim.rssi = sim.rssi - 20
        event = await _next(stream, SpeakerChanged)
        assert isinstance(event, SpeakerChanged)
        assert "rssi" in event.changed
        assert event.speaker.rssi == sim.rssi
    # the stream ended with the tracker; what it knew stays
    assert tracker.speakers[sim.address].rssi == sim.rssi


async def test_no_address_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wking_device")
    tracker = SpeakerTracker(missed_intervals=1, min_timeout=0.1, max_timeout=1.0)
    tracker.observe(_seen(), now=0.0)
    tracker.observe(_seen(), now=0.1)
    tracker.expire(now=5.0)
    tracker.observe(_seen(), now=6.0)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("wking_device.ble")]
    assert len(messages) == 3
    assert all(ADDRESS not in m and "[MAC]" in m for m in messages)
