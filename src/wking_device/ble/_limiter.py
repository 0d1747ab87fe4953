"""A limit on concurrent connections per adapter.

This module owns :class:`ConnectionLimiter` (a counting gate that also measures how many
connections were open at once) and the per-event-loop registry that gives every
:class:`~wking_device.ble.Speaker` on the same backend and adapter the same limiter. It does not
connect anything; a speaker holds a slot from its first connection attempt until it disconnects.

Real adapters manage 5-10 simultaneous LE connections; past that, BlueZ answers with
"le-connection-abort-by-local" or out-of-slots errors, which are slow to recover from. Waiting for
a slot is cheaper than failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from wking_device.ble._backend import BleBackend

__all__ = ["ConnectionLimiter", "limiter_for"]


class ConnectionLimiter:
    """At most ``limit`` connections at once; others wait for a slot (first come, first served).

    Attributes:
        limit: The number of slots.
        active: Slots currently held.
        peak: The highest number of slots held at once since creation (or :meth:`reset_peak`).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.active = 0
        self.peak = 0
        self._semaphore = asyncio.Semaphore(limit)

    @property
    def waiting(self) -> int:
        """How many tasks wait for a slot (approximate; for progress display)."""
        waiters = getattr(self._semaphore, "_waiters", None)
        return len(waiters) if waiters else 0

    async def acquire(self) -> None:
        """Wait for a slot and take it."""
        await self._semaphore.acquire()
        self.active += 1
        self.peak = max(self.peak, self.active)

    def release(self) -> None:
        """Give a slot back."""
        if self.active <= 0:
            raise RuntimeError("ConnectionLimiter.release() without acquire()")
        self.active -= 1
        self._semaphore.release()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a slot for the duration of the ``async with`` block."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def reset_peak(self) -> None:
        """Restart peak measurement from the current number of active slots."""
        self.peak = self.active

    def __repr__(self) -> str:
        return f"ConnectionLimiter(limit={self.limit}, active={self.active}, peak={self.peak})"


# One registry per event loop: asyncio primitives must not cross loops, and a CLI run or a test
# has its own loop. Keys are (client backend class, adapter name).
_REGISTRY: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[object, str | None], ConnectionLimiter]
] = weakref.WeakKeyDictionary()


def limiter_for(
    backend: BleBackend | None, limit: int, *, adapter: str | None = None
) -> ConnectionLimiter:
    """Return the shared limiter for a backend and adapter in the running event loop.

    The first call for a key creates the limiter with ``limit``; later calls return it as is.

    Args:
        backend: The backend pair (``None`` for the platform default).
        limit: Slots, used when the limiter is created (``Settings.ble.max_connections``).
        adapter: The adapter name (e.g. ``hci0``), when several are in use.
    """
    loop = asyncio.get_running_loop()
    per_loop = _REGISTRY.setdefault(loop, {})
    key = (backend.client if backend is not None else None, adapter)
    limiter = per_loop.get(key)
    if limiter is None:
        limiter = per_loop[key] = ConnectionLimiter(limit)
    return limiter
