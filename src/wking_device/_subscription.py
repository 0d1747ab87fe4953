"""The one handle every ``subscribe()`` / ``attach()`` of the library returns.

This module owns :class:`Subscription`: a registration (an event-bus subscriber, a revocation
listener, a store attached to a gate, a speaker's event subscriber) that ends when it is called,
closed, or left as a context manager. It does not deliver anything itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Self

__all__ = ["Subscription"]

_LOGGER = logging.getLogger(__name__)


class Subscription:
    """A registration that ends on ``close()``, on a call, or when its ``with`` block ends.

    ``with gate.subscribe(listener): ...`` or ``sub = bus.subscribe(cb); ...; sub.close()``.
    Calling it (``sub()``) is the same as ``close()``: the library's ``subscribe()`` methods
    returned a plain unsubscribe function before, and code that calls it keeps working. Ending
    it more than once is harmless.

    Args:
        cancel: What ends the registration (called once).
    """

    __slots__ = ("_cancel",)

    def __init__(self, cancel: Callable[[], None]) -> None:
        self._cancel: Callable[[], None] | None = cancel

    @property
    def active(self) -> bool:
        """Whether the registration is still in force."""
        return self._cancel is not None

    def close(self) -> None:
        """End the registration (idempotent)."""
        cancel, self._cancel = self._cancel, None
        if cancel is not None:
            cancel()

    def __call__(self) -> None:
        """End the registration (the same as :meth:`close`)."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {'active' if self.active else 'ended'}>"


# its public home: ``wking_device.Subscription`` (repr, pickle and API docs name it there)
Subscription.__module__ = "wking_device"
