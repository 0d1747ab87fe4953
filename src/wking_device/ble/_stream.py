"""The async iterator of a speaker session's events (:meth:`Speaker.events`).

This module owns turning what a session sees — vendor frames, standard battery readings, the
link going up and down — into the one vocabulary of :mod:`wking_device.events`, each change once,
and queueing it for ``async for``. It does not talk to bleak; the session feeds it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any, Generic, Self, TypeVar

from wking_device.ble._values import BatteryReading
from wking_device.errors import UsageError
from wking_device.events import BatteryChanged, SpeakerEvent
from wking_device.protocol import BatteryLevel, Event, UnknownEvent

__all__ = ["BatteryMemory", "EventStream", "unify"]

_LOGGER = logging.getLogger(__name__)

_E = TypeVar("_E")


class BatteryMemory:
    """What a session last reported of its battery, to report each change once."""

    __slots__ = ("charging", "level")

    def __init__(self) -> None:
        self.level: int | None = None
        self.charging: bool | None = None


def unify(frame: Any, battery: BatteryMemory) -> SpeakerEvent | None:
    """One session event for a vendor frame or a standard battery reading (``None``: a repeat)."""
    if isinstance(frame, BatteryLevel | BatteryReading):
        charging = frame.charging if isinstance(frame, BatteryLevel) else battery.charging
        known = battery.charging
        battery.charging = charging if charging is not None else known
        if frame.level == battery.level and (known is None or charging in (None, known)):
            return None  # the same change, reported on the other channel
        battery.level = frame.level
        return BatteryChanged(level=frame.level, charging=charging)
    if isinstance(frame, Event | UnknownEvent):
        return frame  # type: ignore[return-value]  # the vendor events are SpeakerEvent members
    return frame  # type: ignore[no-any-return]  # Connected / Disconnected


class EventStream(Generic[_E]):
    """``async for event in speaker.events(): ...`` — a session's events, in order.

    Subscribed from creation until :meth:`aclose` (or leaving ``async with``, or the
    ``async for`` loop ending with ``break``... then call ``aclose()``); iteration ends when
    the session is closed with ``disconnect()``. A consumer that falls behind by more than
    ``max_queue`` events loses the oldest ones, counted in :attr:`dropped`. The same stream
    carries a :class:`~wking_device.ble.SpeakerTracker`'s availability events.

    Args:
        detach: Called once when the stream closes (removes it from the session).
        max_queue: Most events kept for a slow consumer (at least 1).

    Raises:
        UsageError: ``max_queue`` is below 1.
    """

    def __init__(self, detach: Callable[[EventStream[_E]], None], *, max_queue: int = 256) -> None:
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise UsageError(f"max_queue must be an int of at least 1, not {max_queue!r}")
        self._detach: Callable[[EventStream[_E]], None] | None = detach
        self._queue: collections.deque[_E] = collections.deque(maxlen=max_queue)
        self._wakeup = asyncio.Event()
        self._ended = False
        self.dropped = 0
        """Events lost because the consumer fell more than ``max_queue`` behind."""

    def put(self, event: _E) -> None:
        """Queue an event (the session calls this in the event loop's thread)."""
        if self._ended:
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        self._wakeup.set()

    def end(self) -> None:
        """End iteration after the events already queued (the session was closed)."""
        self._ended = True
        self._wakeup.set()
        self._run_detach()

    def _run_detach(self) -> None:
        detach, self._detach = self._detach, None
        if detach is not None:
            detach(self)

    async def aclose(self) -> None:
        """Stop receiving events (idempotent)."""
        self._queue.clear()
        self.end()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> _E:
        while not self._queue:
            if self._ended:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
