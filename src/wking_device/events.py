"""What a speaker session tells its users: one event vocabulary, in one place.

This module owns the events :meth:`wking_device.Speaker.events` yields and a ``Speaker``'s
``disconnected_callback`` is about: the link going up and down (:class:`Connected`,
:class:`Disconnected`), one :class:`BatteryChanged` per battery change — whether the speaker
reported it on the vendor channel, on the standard Battery Level characteristic, or both — and
the vendor events, re-exported here from :mod:`wking_device.protocol` under the same classes
(:class:`StateChanged`, :class:`ButtonPressed`, :class:`PoweringOff`, :class:`UnknownEvent`).

It does not connect or decode anything (``ble`` and ``protocol`` do), and it does not carry
operation events (:class:`~wking_device.models.OperationEvent`: the telemetry collectors record).

Deprecated: :meth:`Speaker.subscribe` still delivers the older vocabulary (vendor frames, among
them :class:`~wking_device.protocol.BatteryLevel`, plus
:class:`~wking_device.ble.BatteryReading`, so one change may arrive twice); new code uses
:meth:`Speaker.events`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from wking_device.protocol import ButtonPressed, PoweringOff, StateChanged, UnknownEvent

__all__ = [
    "BatteryChanged",
    "ButtonPressed",
    "Connected",
    "Disconnected",
    "PoweringOff",
    "SpeakerEvent",
    "StateChanged",
    "UnknownEvent",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected:
    """The session's link is up (subscriptions restored).

    Attributes:
        reconnect: ``True`` when this is not the session's first connection.
    """

    reconnect: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected:
    """The session's link went down.

    Attributes:
        expected: ``True`` when the program asked for it (``disconnect()``, leaving
            ``async with``); ``False`` when the link was lost.
    """

    expected: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class BatteryChanged:
    """The battery level (or charging state) changed; delivered once per change.

    Attributes:
        level: 0-100 %.
        charging: Whether it charges, when the speaker said (the standard Battery Level
            characteristic does not).
    """

    level: int
    charging: bool | None = None


SpeakerEvent: TypeAlias = (
    Connected
    | Disconnected
    | BatteryChanged
    | StateChanged
    | ButtonPressed
    | PoweringOff
    | UnknownEvent
)
"""Every event :meth:`wking_device.Speaker.events` yields."""
