"""Operation events of the Bluetooth layer: the bus, and the timer every operation runs under.

This module owns :class:`EventBus` (in-process fan-out of
:class:`~wking_device.models.OperationEvent`) and the process-wide default bus. It does not store,
filter or upload events: collectors subscribe to a bus and decide, under a consent permit, what
becomes a record. Subscribers are called synchronously in the event loop's thread; a subscriber
that raises is logged and skipped, never allowed to break the Bluetooth operation that emitted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeAlias

from wking_device._subscription import Subscription
from wking_device.errors import BluetoothError, BluetoothReason
from wking_device.models import OperationEvent, OperationKind, Outcome

__all__ = ["EventBus", "EventCallback", "Unsubscribe", "get_event_bus"]

_LOGGER = logging.getLogger(__name__)

EventCallback: TypeAlias = Callable[[OperationEvent], None]
"""A subscriber: a plain function taking one :class:`~wking_device.models.OperationEvent`."""


class Unsubscribe(Subscription):
    """The :class:`~wking_device.Subscription` :meth:`EventBus.subscribe` returns.

    Call it, ``close()`` it, or use it as a context manager: ``with bus.subscribe(callback):
    ...`` unsubscribes on the way out. Ending it more than once is harmless.
    """

    __slots__ = ()

    def __init__(self, bus: EventBus, callback: EventCallback) -> None:
        super().__init__(functools.partial(bus._remove, callback))


class EventBus:
    """Fan-out of operation events to in-process subscribers.

    Example::

        bus = EventBus()
        unsubscribe = bus.subscribe(print)
        ...
        unsubscribe()

    Attributes:
        emitted: How many events were emitted since the bus was created.
        subscriber_errors: How many times a subscriber raised.
    """

    def __init__(self) -> None:
        self._callbacks: tuple[EventCallback, ...] = ()
        self.emitted = 0
        self.subscriber_errors = 0

    def subscribe(self, callback: EventCallback) -> Unsubscribe:
        """Call ``callback`` with every event emitted from now on.

        Args:
            callback: A function taking one event. It runs in the event loop's thread and must
                not block; hand work to a queue if it is slow.

        Returns:
            A handle that unsubscribes when called.
        """
        # A tuple swapped on change: emit() iterates a snapshot, so a callback may unsubscribe
        # itself (or others) while being called.
        self._callbacks = (*self._callbacks, callback)
        return Unsubscribe(self, callback)

    def _remove(self, callback: EventCallback) -> None:
        callbacks = list(self._callbacks)
        try:
            callbacks.remove(callback)
        except ValueError:
            return
        self._callbacks = tuple(callbacks)

    @property
    def subscriber_count(self) -> int:
        """How many subscribers are registered."""
        return len(self._callbacks)

    def emit(self, event: OperationEvent) -> None:
        """Deliver one event to every subscriber; a subscriber that raises is logged and skipped.

        Args:
            event: The event.
        """
        self.emitted += 1
        for callback in self._callbacks:
            try:
                callback(event)
            except Exception:
                # A faulty collector must not break a Bluetooth operation (issue 2, item 7).
                self.subscriber_errors += 1
                _LOGGER.exception("operation-event subscriber %r raised; skipped", callback)


_DEFAULT_BUS = EventBus()


def get_event_bus() -> EventBus:
    """Return the process-wide default bus, used when an entry point gets no ``events=``."""
    return _DEFAULT_BUS


def outcome_of(exc: BaseException) -> tuple[Outcome, str | None, str]:
    """Classify an exception for an operation event.

    Args:
        exc: What the operation raised.

    Returns:
        ``(outcome, reason code, error class name)``.
    """
    if isinstance(exc, asyncio.CancelledError):
        return Outcome.CANCELLED, None, type(exc).__name__
    if isinstance(exc, BluetoothError):
        outcome = Outcome.TIMEOUT if exc.reason is BluetoothReason.TIMEOUT else Outcome.ERROR
        return outcome, str(exc.reason), type(exc).__name__
    return Outcome.ERROR, None, type(exc).__name__


class OpTimer:
    """Measures one operation and emits its event (internal helper of the BLE layer).

    Attributes:
        detail: Extra facts added to the event; the operation may fill it in as it runs.
    """

    __slots__ = (
        "_bus",
        "_kind",
        "_started_at",
        "_t0",
        "address",
        "attempt",
        "detail",
        "model",
        "name",
    )

    def __init__(
        self,
        bus: EventBus,
        kind: OperationKind,
        *,
        address: str | None = None,
        name: str | None = None,
        model: str | None = None,
        attempt: int = 1,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self._bus = bus
        self._kind = kind
        self.address = address
        self.name = name
        self.model = model
        self.attempt = attempt
        self.detail: dict[str, Any] = detail if detail is not None else {}
        self._started_at = time.time()
        self._t0 = time.monotonic()

    def ok(self) -> None:
        """Emit the event with outcome OK."""
        self._emit(Outcome.OK, None, None)

    def retry(self, exc: BaseException) -> None:
        """Emit the event with outcome RETRY (a failed attempt that will be retried)."""
        _, reason, error_type = outcome_of(exc)
        self._emit(Outcome.RETRY, reason, error_type)

    def fail(self, exc: BaseException) -> None:
        """Emit the event for an operation that ended with ``exc``."""
        outcome, reason, error_type = outcome_of(exc)
        self._emit(outcome, reason, error_type)

    def _emit(self, outcome: Outcome, reason: str | None, error_type: str | None) -> None:
        self._bus.emit(
            OperationEvent(
                kind=self._kind,
                outcome=outcome,
                address=self.address,
                name=self.name,
                model=self.model,
                started_at=self._started_at,
                duration_s=time.monotonic() - self._t0,
                attempt=self.attempt,
                error=reason,
                error_type=error_type,
                detail=self.detail,
            )
        )
