"""Fault plans: what a simulated speaker does wrong, settable at construction and at run time.

This module owns the :class:`FaultPlan` model only. It imports nothing of bumble (so fault plans
can be built, validated and serialised where the ``sim`` extra is missing); the speaker
(:mod:`wking_device.sim._speaker`) applies a plan and reacts to changes through
:meth:`FaultPlan.observe`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

__all__ = ["FaultPlan"]


class FaultPlan(BaseModel):
    """The faults one simulated speaker shows; change any field while the world runs.

    Every field is validated on construction and on assignment. Observers registered with
    :meth:`observe` (the speaker) are told the field name after each assignment, so
    ``speaker.faults.in_range = False`` takes effect at once (an open connection is dropped).

    Attributes:
        connectable: ``False``: the speaker advertises as non-connectable and refuses connections
            (a connect attempt times out, as with a real stack).
        in_range: ``False``: the speaker is out of range: no advertisements, no traffic; an open
            connection is terminated on both sides with HCI reason 0x08 (connection timeout).
        abort_connect_attempts: 1-based connection attempt numbers (counted per speaker) that
            are aborted by the link, which bleak reports the way BlueZ does
            (``le-connection-abort-by-local``), so bleak-retry-connector treats them as transient.
        disconnect_after_ops: After this many GATT operations (reads and writes) on one
            connection the speaker drops the link (reason 0x08) instead of answering the next.
        response_delay_s: Delay before every read answer and every vendor response.
        drop_responses: Probability (0-1) that a vendor command gets no response at all.
        drop_notifications: Probability (0-1) that an unsolicited notification (vendor event,
            battery level) is not sent.
        malformed_responses: Probability (0-1) that a vendor response is corrupted.
        malformed_kind: How a corrupted response looks: ``"bad_crc"`` (last byte flipped) or
            ``"truncated"`` (the frame is cut short).
        battery_drain_per_min: Battery percentage points lost per minute (simulated time runs
            with the world's clock).
        rssi_drift_db_per_s: RSSI change per second (clamped to -100..-30 dBm).
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    connectable: bool = True
    in_range: bool = True
    abort_connect_attempts: frozenset[int] = frozenset()
    disconnect_after_ops: int | None = Field(default=None, ge=0)
    response_delay_s: float = Field(default=0.0, ge=0.0, le=300.0)
    drop_responses: float = Field(default=0.0, ge=0.0, le=1.0)
    drop_notifications: float = Field(default=0.0, ge=0.0, le=1.0)
    malformed_responses: float = Field(default=0.0, ge=0.0, le=1.0)
    malformed_kind: Literal["bad_crc", "truncated"] = "bad_crc"
    battery_drain_per_min: float = Field(default=0.0, ge=0.0)
    rssi_drift_db_per_s: float = 0.0

    _observers: list[Callable[[str], None]] = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        """Start with no observers (pydantic calls this after validating a new plan).

        Args:
            context: pydantic's validation context (unused).
        """
        self._observers = []

    def observe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(field_name)`` after every assignment to a field.

        Args:
            callback: Receives the name of the field that changed.

        Returns:
            A function that removes the observer.
        """
        self._observers.append(callback)

        def remove() -> None:
            if callback in self._observers:
                self._observers.remove(callback)

        return remove

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_"):
            for callback in list(self._observers):
                callback(name)
