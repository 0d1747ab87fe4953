"""A speaker's advertised name is hostile text: what a repr of its session shows (review).

``Speaker.__repr__`` put the raw name into the string, so a log line or a traceback that showed a
session carried the speaker's escape sequences, line breaks and a MAC-shaped name as they were.
"""

from __future__ import annotations

import dataclasses

from wking_device.ble import Speaker, discover, get_event_bus
from wking_device.models import OperationEvent
from wking_device.sim import SimWorld, SpeakerSpec

HOSTILE = "C0:57:4B:00:00:09\x1b[2J\n[b]x\u202e"
"""A name that is an address, clears a terminal, breaks a line, is Rich markup, reverses text."""


async def test_a_speakers_repr_holds_no_address_and_nothing_a_terminal_acts_on() -> None:
    spec = dataclasses.replace(SpeakerSpec.for_index(1, adv_interval_ms=20), name=HOSTILE)
    async with SimWorld([spec]) as world:
        found = await discover(2.0, backend=world.backend, count=1)
        assert [s.name for s in found] == [HOSTILE]  # the name travelled as advertised
        async with Speaker(found[0], backend=world.backend) as speaker:
            shown = repr(speaker)
    assert "C0:57:4B" not in shown.upper()
    assert "[MAC]" in shown
    assert shown.isprintable(), shown  # no ESC, line break or bidirectional override
    assert "\\x1b" in shown  # escaped, still there for whoever debugs it
    assert shown.endswith(" connected>")


async def test_reprs_of_a_discovery_result_and_device_info_hold_no_address_nor_raw_text() -> None:
    # the dataclass and pydantic reprs showed the address and the speaker's raw strings: a log
    # line or a traceback that showed one carried both
    hostile_dis = "SN C0-57-4B-00-00-09\x1b]0;t\x07\r\nforged"
    spec = dataclasses.replace(
        SpeakerSpec.for_index(1, adv_interval_ms=20),
        name=HOSTILE,
        firmware=hostile_dis,
    )
    events: list[OperationEvent] = []
    unsubscribe = get_event_bus().subscribe(events.append)
    try:
        async with SimWorld([spec]) as world:
            found = await discover(2.0, backend=world.backend, count=1)
            async with Speaker(found[0], backend=world.backend) as speaker:
                info = await speaker.read_info()
    finally:
        unsubscribe()
    assert info.firmware == hostile_dis  # the value itself is exact
    named = [event for event in events if event.name == HOSTILE and event.address]
    assert named  # the connect's event carries the name and the address
    for shown in (repr(found[0]), str(found[0]), repr(info), str(info), repr(named[0])):
        assert "C0:57:4B" not in shown.upper(), shown
        assert "C0-57-4B" not in shown.upper(), shown
        assert "C0574B" not in shown.upper(), shown
        assert "[MAC]" in shown
        assert shown.isprintable(), shown
        assert "\\x1b" in shown
