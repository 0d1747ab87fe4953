"""A kept session that keeps failing with an unexpected error says so once, not at every retry.

A bug outside the Bluetooth layer's translation (here a third-party profile whose codec cannot
be made) was logged with ``_LOGGER.exception`` at every backoff retry: a traceback in the journal
every few seconds, for as long as the speaker is kept. Now: one line per distinct failure, the
traceback at DEBUG only (as the agent's parts and the store's writer do).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from wking_device.ble import RetryPolicy, SessionKeeper, discover
from wking_device.protocol import WkingV1Profile
from wking_device.sim import SimWorld

if TYPE_CHECKING:
    import pytest

    from wking_device.config import BleSettings

FAST_BACKOFF = RetryPolicy(attempts=1, base_delay=0.02, max_delay=0.05, jitter=0.0)


class _BrokenCodec(WkingV1Profile):
    """The built-in profile, except that its codec cannot be made (a bug of its own)."""

    def new_codec(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the codec table is broken")


async def test_an_unexpected_error_of_a_kept_session_is_one_line_until_it_changes(
    caplog: pytest.LogCaptureFixture, fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    caplog.set_level(logging.DEBUG, logger="wking_device.ble._sessions")
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        found = await discover(2.0, backend=world.backend, count=1)
        async with _broken_keeper(world, fast_settings, fast_retry) as keeper:
            await keeper.keep({sim.address}, found)
            async with asyncio.timeout(20):
                while sim.connect_attempts < 4:  # noqa: ASYNC110 - the simulator's counter
                    await asyncio.sleep(0.02)
    mine = [r for r in caplog.records if r.name == "wking_device.ble._sessions"]
    said = [r for r in mine if r.levelno > logging.DEBUG]
    assert len(said) == 1, [(r.getMessage(), _traced(r)) for r in said]
    assert not _traced(said[0])  # no traceback above DEBUG
    assert "RuntimeError: the codec table is broken" in said[0].getMessage()
    traced = [r for r in mine if r.levelno == logging.DEBUG and _traced(r)]
    assert len(traced) >= 3  # each failure's traceback is there for -v


def _broken_keeper(world: SimWorld, settings: BleSettings, retry: RetryPolicy) -> SessionKeeper:
    """A keeper of the world's speakers whose profile's codec cannot be made."""
    return SessionKeeper(
        backend=world.backend,
        profile=_BrokenCodec(),
        settings=settings,
        backoff=FAST_BACKOFF,
        retry=retry,
    )


def _traced(record: logging.LogRecord) -> bool:
    """Whether a record carries a traceback (the redaction formats it into ``exc_text``)."""
    return bool(record.exc_info or record.exc_text)


async def test_last_error_tells_the_latest_failure_when_it_is_unexpected(
    fast_settings: BleSettings, fast_retry: RetryPolicy
) -> None:
    # last_error() kept the previous Bluetooth error when a later attempt failed unexpectedly:
    # it named a failure that was no longer the one happening
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        sim = world.speakers[0]
        sim.faults.abort_connect_attempts = frozenset(range(1, fast_retry.attempts + 1))
        found = await discover(2.0, backend=world.backend, count=1)
        async with _broken_keeper(world, fast_settings, fast_retry) as keeper:
            await keeper.keep({sim.address}, found)
            await keeper.settled(20)
            first = keeper.last_error(sim.address)
            assert first is not None
            assert "RuntimeError" not in first.message  # the aborted connects' error
            async with asyncio.timeout(20):
                # attempt N+1 reaches the broken codec; N+2 starts once its failure is handled
                while sim.connect_attempts < fast_retry.attempts + 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            latest = keeper.last_error(sim.address)
    assert latest is not None
    assert latest is not first
    assert "unexpected RuntimeError" in latest.message
