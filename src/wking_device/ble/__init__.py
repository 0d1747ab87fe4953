"""The Bluetooth layer: discovery, connection with retry, the device session, operation events.

This package owns everything that talks to bleak: finding speakers (:func:`discover`,
:class:`SpeakerScanner`, :func:`find`), sessions with one speaker (:class:`Speaker`: connect with
bounded retries from a fresh ``BLEDevice``, standard and vendor reads, control commands,
notifications), persistent sessions (:class:`SessionKeeper`), availability tracking
(:class:`SpeakerTracker`: which speakers are around, and when one goes away), the per-adapter
:class:`ConnectionLimiter` (and :func:`acquire_first`: the slot of whichever of several
adapters frees one first), reading a fleet (:func:`read_all`) and the :class:`EventBus` every
operation reports to. Every entry point takes
``backend: BleBackend | None`` (the simulator's or the platform default). Foreign errors are
translated here into :mod:`wking_device.errors`. It stores nothing and decides nothing about
consent: collectors subscribe to the event bus.
"""

from __future__ import annotations

from wking_device._public import publish as _publish
from wking_device.ble._adapters import (
    AdapterCandidate,
    AdapterSlots,
    adapter_slots,
    bluez_connected_by_adapter,
    close_stale_connections,
    connected_in_stack,
    pick_adapter,
)
from wking_device.ble._backend import BleBackend
from wking_device.ble._discovery import (
    DEFAULT_SCAN_TIMEOUT,
    SIGHTING_STALE_S,
    DiscoveredSpeaker,
    SpeakerScanner,
    discover,
    find,
    find_speaker,
)
from wking_device.ble._events import EventBus, EventCallback, Unsubscribe, get_event_bus
from wking_device.ble._fleet import FleetResult, read_all
from wking_device.ble._limiter import ConnectionLimiter, acquire_first, limiter_for
from wking_device.ble._sessions import SessionKeeper
from wking_device.ble._speaker import DEFAULT_RECONNECT_TIMEOUT, Speaker
from wking_device.ble._stream import EventStream
from wking_device.ble._tracker import (
    AvailabilityEvent,
    SpeakerAppeared,
    SpeakerChanged,
    SpeakerTracker,
    SpeakerUnavailable,
    TrackedSpeaker,
)
from wking_device.ble._translate import RetryPolicy
from wking_device.ble._values import BatteryReading, CommandFrame, SpeakerEvent, SpeakerTarget

__all__ = [  # noqa: RUF022 - plain sorted() order, like wking_device.__all__
    "AdapterCandidate",
    "AdapterSlots",
    "AvailabilityEvent",
    "BatteryReading",
    "BleBackend",
    "CommandFrame",
    "ConnectionLimiter",
    "DEFAULT_RECONNECT_TIMEOUT",
    "DEFAULT_SCAN_TIMEOUT",
    "DiscoveredSpeaker",
    "EventBus",
    "EventCallback",
    "EventStream",
    "FleetResult",
    "RetryPolicy",
    "SIGHTING_STALE_S",
    "SessionKeeper",
    "Speaker",
    "SpeakerAppeared",
    "SpeakerChanged",
    "SpeakerEvent",
    "SpeakerScanner",
    "SpeakerTarget",
    "SpeakerTracker",
    "SpeakerUnavailable",
    "TrackedSpeaker",
    "Unsubscribe",
    "acquire_first",
    "adapter_slots",
    "bluez_connected_by_adapter",
    "close_stale_connections",
    "connected_in_stack",
    "discover",
    "find",
    "find_speaker",
    "get_event_bus",
    "limiter_for",
    "pick_adapter",
    "read_all",
]

_publish(__name__, globals(), __all__)
