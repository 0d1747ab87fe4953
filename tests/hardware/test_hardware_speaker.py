"""Against a real adapter and a real W-KING speaker: opt-in with ``pytest --hardware``.

Set ``WKING_TEST_ADDRESS`` to the speaker's address to pick one; otherwise the strongest W-KING
speaker in range is used. These tests change the speaker's volume and put it back.
"""

from __future__ import annotations

import os

import pytest

from wking_device.ble import Speaker, discover

pytestmark = pytest.mark.hardware

# read at collection: the autouse fixture clears WKING_* variables before each test
_ADDRESS = os.environ.get("WKING_TEST_ADDRESS")


async def _target() -> str:
    if _ADDRESS:
        return _ADDRESS
    found = await discover(10.0, count=1)
    assert found, "no W-KING speaker advertised within 10 s"
    return found[0].address


async def test_a_real_speaker_is_discovered_and_read() -> None:
    async with Speaker(await _target()) as speaker:
        info = await speaker.read_info()
    assert info.manufacturer
    assert info.battery is None or 0 <= info.battery <= 100


async def test_a_real_speaker_takes_a_volume_and_gives_it_back() -> None:
    async with Speaker(await _target()) as speaker:
        if not speaker.has_vendor_channel:
            pytest.skip("this speaker does not speak wking-v1 (the vendor protocol is unpublished)")
        before = (await speaker.get_state()).volume
        await speaker.set_volume(max(0, before - 1))
        assert (await speaker.get_state()).volume == max(0, before - 1)
        await speaker.set_volume(before)
