"""Delivery of a speaker's unsolicited events to one subscriber, off the notification path.

This module owns :class:`EventQueue`: a bounded queue per subscriber, emptied by a task that
calls the subscriber once per event and yields to the event loop between events, so a slow
subscriber never delays the receive path (and with it the responses commands wait for).

Overflow policy: when a subscriber falls ``max_queued`` events behind, the **oldest** queued event
is dropped and counted (:attr:`EventQueue.dropped`); the newest state is what a late subscriber
most needs. It does not decode events or know about connections (``Speaker`` does).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Final, Generic, TypeVar

from wking_device.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DEFAULT_MAX_QUEUED", "EventQueue"]

_LOGGER = logging.getLogger(__name__)

#: Events one subscriber may fall behind before the oldest are dropped.
DEFAULT_MAX_QUEUED: Final = 256

_E = TypeVar("_E")


class EventQueue(Generic[_E]):
    """A subscriber's bounded event queue, delivered by a task in the running loop.

    Args:
        callback: Called with each event, in order, in the event loop's thread. An exception
            is logged and the next event delivered.
        max_queued: Events held before the oldest is dropped (at least 1).

    Raises:
        UsageError: ``max_queued`` is below 1.
    """

    def __init__(
        self, callback: Callable[[_E], None], *, max_queued: int = DEFAULT_MAX_QUEUED
    ) -> None:
        if isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 1:
            raise UsageError(f"max_queued must be an integer of at least 1, got {max_queued!r}")
        self.callback = callback
        self._max = max_queued
        self._queue: deque[_E] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.dropped = 0
        """Events dropped because the subscriber was ``max_queued`` behind (oldest first)."""

    @property
    def queued(self) -> int:
        """Events waiting for the subscriber."""
        return len(self._queue)

    def put(self, event: _E) -> None:
        """Queue ``event`` (dropping the oldest when full) and make sure a task delivers it.

        Must be called in the event loop's thread, with the loop running.
        """
        if self._closed:
            return
        if len(self._queue) >= self._max:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % self._max == 0:
                _LOGGER.warning(
                    "a speaker event subscriber is %d events behind; %d oldest dropped so far",
                    self._max,
                    self.dropped,
                )
        self._queue.append(event)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._queue:
                event = self._queue.popleft()
                try:
                    self.callback(event)
                except Exception:
                    _LOGGER.exception("speaker event subscriber raised; skipped")
                await asyncio.sleep(0)  # the receive path runs between two events
        finally:
            self._task = None

    def close(self) -> None:
        """Stop delivering: queued events are discarded and the task (if any) is cancelled."""
        self._closed = True
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()
