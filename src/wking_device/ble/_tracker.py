"""Availability tracking: every speaker seen, remembered beyond one scan, and when it goes away.

This module owns :class:`SpeakerTracker` (a long-running scan that remembers each speaker's last
advertisement, RSSI and learned advertising interval), the snapshot it keeps per speaker
(:class:`TrackedSpeaker`) and its three events — :class:`SpeakerAppeared`,
:class:`SpeakerChanged`, :class:`SpeakerUnavailable` — delivered to callbacks
(:meth:`SpeakerTracker.subscribe`) and to ``async for`` streams (:meth:`SpeakerTracker.events`),
the same two styles a :class:`~wking_device.ble.Speaker` session offers.

How "unavailable" is decided (habluetooth's idea, with our numbers): the advertising interval is
learned as the shortest gap between two advertisements among the last :data:`INTERVAL_SAMPLES`
gaps (missed advertisements only lengthen gaps; gaps under 10 ms are an advertisement and its scan
response, not an interval). A speaker is unavailable once nothing was heard from it for
``missed_intervals`` learned intervals, clamped to ``[min_timeout, max_timeout]``; until its
interval is learned, after ``max_timeout``. Time comes from the ``clock`` given (monotonic by
default), and :meth:`SpeakerTracker.expire` can be called with an explicit ``now``, so tests
control time instead of sleeping it out.

It does not connect, store or decide anything about consent; addresses it logs go through the
package's log redaction like every other record (no MAC in a log line).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Literal, TypeAlias

# Imported at run time (this package loads it anyway) so that
# typing.get_type_hints resolves the public annotations that name them.
from bleak.backends.device import BLEDevice  # noqa: TC002

from wking_device.ble._backend import BleBackend
from wking_device.ble._delivery import DEFAULT_MAX_QUEUED, EventQueue
from wking_device.ble._discovery import SIGHTING_STALE_S, DiscoveredSpeaker, SpeakerScanner
from wking_device.ble._events import EventBus
from wking_device.ble._stream import EventStream
from wking_device.errors import UsageError
from wking_device.protocol import WKING_V1, DeviceProfile

__all__ = [
    "INTERVAL_SAMPLES",
    "AvailabilityEvent",
    "SpeakerAppeared",
    "SpeakerChanged",
    "SpeakerTracker",
    "SpeakerUnavailable",
    "TrackedSpeaker",
]

_LOGGER = logging.getLogger(__name__)

INTERVAL_SAMPLES = 16
"""Gaps between advertisements kept per speaker to learn its advertising interval."""

_MIN_GAP_S = 0.010
"""A gap shorter than this is one advertising event seen twice (advertisement + scan response)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackedSpeaker:
    """What a :class:`SpeakerTracker` remembers of one speaker.

    Attributes:
        address: The Bluetooth address (a UUID on macOS).
        name: The latest advertised name (kept when a later advertisement has none).
        rssi: Signal strength of the latest advertisement (of the kept sighting), in dBm.
        model: The profile's model id, when it could tell.
        tx_power: Advertised TX power in dBm, when present.
        service_uuids: Advertised service UUIDs.
        available: ``False`` once it stayed silent past its timeout (until heard again).
        first_seen: ``clock()`` of the first advertisement.
        last_seen: ``clock()`` of the latest advertisement.
        adverts: Advertisements heard.
        interval: The learned advertising interval in seconds (``None`` until two
            advertisements were heard at least 10 ms apart).
        adapter: The adapter of the kept sighting, when the scan named one (``None``: the
            platform's default adapter).
        device: bleak's ``BLEDevice`` of the latest advertisement (connect with it); on several
            adapters, of the sighting the scanner keeps (see :meth:`SpeakerScanner.takes`).
    """

    address: str
    name: str | None
    rssi: int
    model: str | None = None
    tx_power: int | None = None
    service_uuids: tuple[str, ...] = ()
    available: bool = True
    first_seen: float = 0.0
    last_seen: float = 0.0
    adverts: int = 1
    interval: float | None = None
    adapter: str | None = None
    device: BLEDevice | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakerAppeared:
    """A speaker was heard for the first time, or again after it had become unavailable.

    Attributes:
        speaker: What is known of it now.
        returned: ``True`` when it had been unavailable before.
    """

    speaker: TrackedSpeaker
    returned: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakerChanged:
    """An available speaker's advertisement changed.

    Attributes:
        speaker: What is known of it now.
        changed: The fields that changed: ``name``, ``model``, ``tx_power``, ``service_uuids``,
            ``adapter`` (another adapter's sighting is kept now), and ``rssi`` when it moved by
            ``rssi_step`` dB or more since the last event.
    """

    speaker: TrackedSpeaker
    changed: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakerUnavailable:
    """A speaker stayed silent past its timeout.

    Attributes:
        speaker: What was last known of it (``available`` is ``False``).
        silent_s: Seconds since its last advertisement.
        timeout_s: The timeout that ran out (learned interval times ``missed_intervals``, clamped).
    """

    speaker: TrackedSpeaker
    silent_s: float
    timeout_s: float


AvailabilityEvent: TypeAlias = SpeakerAppeared | SpeakerChanged | SpeakerUnavailable
"""Every event a :class:`SpeakerTracker` delivers."""


class _Track:
    """The tracker's mutable state for one speaker (snapshots are :class:`TrackedSpeaker`)."""

    __slots__ = ("event_at", "gaps", "reported_rssi", "snapshot")

    def __init__(self, snapshot: TrackedSpeaker) -> None:
        self.snapshot = snapshot
        self.event_at = snapshot.last_seen
        """When the latest advertising event began (its scan response does not move it)."""
        self.gaps: collections.deque[float] = collections.deque(maxlen=INTERVAL_SAMPLES)
        self.reported_rssi = snapshot.rssi


def _number(name: str, value: object, *, optional: bool = False) -> None:
    """Refuse a bound that is not a real number (``"10"``, ``True``, NaN) with its name."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise UsageError(f"{name} must be a number, not {value!r}")


class SpeakerTracker:
    """A scan that runs until stopped and tells when speakers appear, change and go away.

    Example::

        async with SpeakerTracker(backend=backend) as tracker, tracker.events() as stream:
            async for event in stream:
                if isinstance(event, SpeakerUnavailable):
                    ...

    Args:
        backend: The bleak backend pair; ``None`` for the platform default.
        profile: Matches advertisements to models.
        events: The operation-event bus (the scan's ``SCAN`` event goes there when it stops).
        scanning_mode: ``"active"`` or ``"passive"`` (as :class:`SpeakerScanner`).
        adapter: The adapter to scan with (e.g. ``hci1``); ``None`` for the default one.
        adapters: Several adapters to scan with at once (``[ble] adapters``), instead of
            ``adapter`` (as :class:`SpeakerScanner`): an advertisement any of them hears counts,
            so a speaker is unavailable only once no adapter heard it for its timeout. The
            snapshot (RSSI, ``device``) is the scanner's kept sighting, which moves to another
            adapter that hears it when the kept one has not for ``min_timeout`` (at most
            :data:`~wking_device.ble.SIGHTING_STALE_S`).
        missed_intervals: Learned advertising intervals of silence after which a speaker is
            unavailable.
        min_timeout: The shortest silence, in seconds, that makes a speaker unavailable (radio
            noise and a busy adapter lose bursts of advertisements).
        max_timeout: The longest; also the timeout of a speaker whose interval is not learned.
        rssi_step: An RSSI move of at least this many dB (since the last event about that
            speaker) is a change; smaller ones update :attr:`speakers` silently.
        check_every: Seconds between checks for silent speakers while running (default: a
            quarter of ``min_timeout``, at most 1 s).
        clock: Monotonic seconds; inject a controlled one in tests.

    Attributes:
        speakers: Every speaker heard since the tracker was created, available or not, by
            upper-case address.

    Raises:
        UsageError: A bound is not a number (the message names it) or not positive,
            ``min_timeout`` exceeds ``max_timeout``, or ``adapters`` is empty or given with
            ``adapter``.
    """

    def __init__(
        self,
        *,
        backend: BleBackend | None = None,
        profile: DeviceProfile = WKING_V1,
        events: EventBus | None = None,
        scanning_mode: Literal["active", "passive"] = "active",
        adapter: str | None = None,
        adapters: Sequence[str] | None = None,
        missed_intervals: int = 10,
        min_timeout: float = 10.0,
        max_timeout: float = 300.0,
        rssi_step: int = 5,
        check_every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (
            ("missed_intervals", missed_intervals),
            ("min_timeout", min_timeout),
            ("max_timeout", max_timeout),
            ("rssi_step", rssi_step),
            ("check_every", check_every),
        ):
            _number(name, value, optional=name == "check_every")
        if check_every is not None and not 0 < check_every < math.inf:
            raise UsageError(
                f"check_every must be a positive number of seconds, not {check_every!r}"
            )
        if missed_intervals < 1 or min_timeout <= 0 or rssi_step < 1:
            raise UsageError(
                "missed_intervals and rssi_step must be at least 1 and min_timeout positive"
            )
        if min_timeout > max_timeout:
            raise UsageError(
                f"min_timeout ({min_timeout:g} s) exceeds max_timeout ({max_timeout:g} s)"
            )
        self._missed = missed_intervals
        self._min_timeout = min_timeout
        self._max_timeout = max_timeout
        self._rssi_step = rssi_step
        self._check_every = check_every if check_every is not None else min(1.0, min_timeout / 4)
        self._clock = clock
        self._scanner = SpeakerScanner(
            backend=backend,
            profile=profile,
            events=events,
            scanning_mode=scanning_mode,
            adapter=adapter,
            adapters=adapters,
            stale_after=min(SIGHTING_STALE_S, min_timeout),
            on_advertisement=self.observe,
        )
        self._tracks: dict[str, _Track] = {}
        self._streams: list[EventStream[AvailabilityEvent]] = []
        self._listeners: list[EventQueue[AvailabilityEvent]] = []
        self._checker: asyncio.Task[None] | None = None
        self._lifecycle = asyncio.Lock()
        """Held by start() and stop(): one at a time, each after the one called before."""

    # --- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start scanning and checking for silent speakers.

        Raises:
            AdapterUnavailable: Scanning could not start.
            UnsupportedOperation: A passive scan the platform cannot do.
        """
        async with self._lifecycle:  # a second start() meanwhile would start a second check
            if self._checker is not None:
                return
            await self._scanner.start()
            self._checker = asyncio.get_running_loop().create_task(
                self._check_forever(), name="wking-tracker-expiry"
            )

    async def stop(self) -> None:
        """Stop scanning (idempotent); streams end, what is remembered stays.

        Called while :meth:`start` is under way, it waits for it and then stops.
        """
        async with self._lifecycle:
            checker, self._checker = self._checker, None
            if checker is not None:
                checker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checker
            await self._scanner.stop()
            for stream in list(self._streams):
                stream.end()

    async def __aenter__(self) -> SpeakerTracker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self._check_every)
            self.expire()

    # --- what is known --------------------------------------------------------------------------

    @property
    def speakers(self) -> dict[str, TrackedSpeaker]:
        """Every speaker heard, available or not, by upper-case address."""
        return {address: track.snapshot for address, track in self._tracks.items()}

    def available(self) -> list[TrackedSpeaker]:
        """The available speakers, strongest signal first."""
        found = [t.snapshot for t in self._tracks.values() if t.snapshot.available]
        return sorted(found, key=lambda s: (-s.rssi, s.address))

    def timeout_for(self, speaker: TrackedSpeaker) -> float:
        """Seconds of silence after which ``speaker`` is unavailable."""
        if speaker.interval is None:
            return self._max_timeout
        return min(self._max_timeout, max(self._min_timeout, speaker.interval * self._missed))

    # --- delivery -------------------------------------------------------------------------------

    def subscribe(
        self,
        callback: Callable[[AvailabilityEvent], None],
        *,
        max_queued: int = DEFAULT_MAX_QUEUED,
    ) -> Callable[[], None]:
        """Call ``callback`` with every event, in order, from a task of its own.

        As with :meth:`Speaker.subscribe <wking_device.ble.Speaker.subscribe>`, a slow callback
        never delays the scan: one that falls ``max_queued`` events behind loses the oldest.

        Returns:
            A function that unsubscribes.
        """
        queue: EventQueue[AvailabilityEvent] = EventQueue(callback, max_queued=max_queued)
        self._listeners.append(queue)

        def unsubscribe() -> None:
            if queue in self._listeners:
                self._listeners.remove(queue)
                queue.close()

        return unsubscribe

    def events(self, *, max_queue: int = 256) -> EventStream[AvailabilityEvent]:
        """The tracker's events for ``async for``, from now until :meth:`stop`.

        Args:
            max_queue: Most events kept for a slow consumer (the oldest go first, counted in
                ``stream.dropped``).
        """
        stream: EventStream[AvailabilityEvent] = EventStream(
            self._streams.remove, max_queue=max_queue
        )
        self._streams.append(stream)
        return stream

    def _emit(self, event: AvailabilityEvent) -> None:
        for stream in list(self._streams):
            stream.put(event)
        for queue in self._listeners:
            queue.put(event)

    # --- input ----------------------------------------------------------------------------------

    def observe(self, seen: DiscoveredSpeaker, *, now: float | None = None) -> None:
        """Take one advertisement into account (the tracker's own scan calls this for each).

        Args:
            seen: The speaker as the advertisement showed it.
            now: When it was heard (default ``clock()``).
        """
        now = self._clock() if now is None else now
        key = seen.address.upper()
        track = self._tracks.get(key)
        if track is None:
            snapshot = self._snapshot(seen, now=now)
            self._tracks[key] = _Track(snapshot)
            _LOGGER.debug("%s appeared (%d dBm)", seen.address, seen.rssi)
            self._emit(SpeakerAppeared(speaker=snapshot))
            return
        old = track.snapshot
        gap = now - track.event_at
        if gap >= _MIN_GAP_S or not old.available:
            if old.available:  # the silence of an unavailable speaker is no interval
                track.gaps.append(gap)
            track.event_at = now
        snapshot = self._snapshot(
            seen,
            now=now,
            old=old,
            interval=min(track.gaps) if track.gaps else None,
        )
        track.snapshot = snapshot
        if not old.available:
            track.reported_rssi = snapshot.rssi
            _LOGGER.debug("%s is available again", seen.address)
            self._emit(SpeakerAppeared(speaker=snapshot, returned=True))
            return
        changed = [
            name
            for name in ("name", "model", "tx_power", "service_uuids", "adapter")
            if getattr(snapshot, name) != getattr(old, name)
        ]
        if abs(snapshot.rssi - track.reported_rssi) >= self._rssi_step:
            changed.append("rssi")
        if changed:
            track.reported_rssi = snapshot.rssi
            self._emit(SpeakerChanged(speaker=snapshot, changed=tuple(changed)))

    @staticmethod
    def _snapshot(
        seen: DiscoveredSpeaker,
        *,
        now: float,
        old: TrackedSpeaker | None = None,
        interval: float | None = None,
    ) -> TrackedSpeaker:
        return TrackedSpeaker(
            address=seen.address,
            name=seen.name if seen.name is not None or old is None else old.name,
            rssi=seen.rssi,
            model=seen.model if seen.model is not None or old is None else old.model,
            tx_power=seen.tx_power,
            service_uuids=seen.service_uuids,
            available=True,
            first_seen=old.first_seen if old is not None else now,
            last_seen=now,
            adverts=old.adverts + 1 if old is not None else 1,
            interval=interval,
            adapter=seen.adapter,
            device=seen.device,
        )

    def expire(self, *, now: float | None = None) -> list[SpeakerUnavailable]:
        """Mark speakers silent past their timeout unavailable (the running tracker does this).

        Args:
            now: The time to judge by (default ``clock()``).

        Returns:
            The events delivered, one per speaker that became unavailable.
        """
        now = self._clock() if now is None else now
        gone: list[SpeakerUnavailable] = []
        for track in self._tracks.values():
            speaker = track.snapshot
            if not speaker.available:
                continue
            silent, timeout = now - speaker.last_seen, self.timeout_for(speaker)
            if silent <= timeout:
                continue
            track.snapshot = replace(speaker, available=False)
            _LOGGER.debug("%s unavailable: silent for %.1f s", speaker.address, silent)
            event = SpeakerUnavailable(speaker=track.snapshot, silent_s=silent, timeout_s=timeout)
            gone.append(event)
            self._emit(event)
        return gone
