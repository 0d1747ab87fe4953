"""A ``SessionKeeper`` let go of by two callers at once (review).

``keep()`` listed the speakers no longer wanted, then let each go in turn; an ``aclose()`` (or
another ``keep()``) meanwhile let them go first, and ``keep()`` then failed with a ``KeyError``
naming the speaker's address — neither a ``WkingError`` nor free of the address.
"""

from __future__ import annotations

import asyncio

import pytest

from wking_device.ble import SessionKeeper, discover

pytest.importorskip("bumble")
from wking_device.sim import SimWorld


async def test_keep_and_aclose_at_once_let_every_speaker_go_without_an_error() -> None:
    async with SimWorld.fleet(2, instant_connect=True) as world:
        found = await discover(1.0, backend=world.backend, count=2)
        keeper = SessionKeeper(backend=world.backend, slots=2)
        wanted = {speaker.address for speaker in found}
        assert await keeper.keep(wanted, found) == {a.upper() for a in wanted}
        await keeper.settled(10.0)
        kept, closed = await asyncio.gather(keeper.keep(set()), keeper.aclose())
        assert kept == set()
        assert closed is None
        assert keeper.connected() == set()


async def test_two_keeps_at_once_agree_on_what_is_kept() -> None:
    async with SimWorld.fleet(2, instant_connect=True) as world:
        found = await discover(1.0, backend=world.backend, count=2)
        keeper = SessionKeeper(backend=world.backend, slots=2)
        wanted = {speaker.address for speaker in found}
        await keeper.keep(wanted, found)
        await keeper.settled(10.0)
        first, second = await asyncio.gather(keeper.keep(set()), keeper.keep(set()))
        assert first == second == set()
        await keeper.aclose()
