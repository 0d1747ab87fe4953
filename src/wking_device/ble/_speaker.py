"""The device session's public face: :class:`Speaker`, its command API and its notifications.

This module owns :class:`Speaker`, the one public class of a session: its arguments and state,
identity, the public life cycle (``async with``, :meth:`~Speaker.connect`,
:meth:`~Speaker.reconnect`, :meth:`~Speaker.disconnect`), GATT reads and writes, standard Device
Information and Battery (which work on any BLE device), the ``wking-v1`` vendor channel (the
sans-IO :class:`~wking_device.protocol.FrameCodec` driven over GATT writes and notifications,
requests and responses correlated by sequence number) and the public side of notifications
(raw subscriptions, subscribers, event streams). Every operation emits an
:class:`~wking_device.models.OperationEvent`.
It does not keep the link itself: connecting with retries and backoff, the reconnect policy,
teardown and the guarded GATT operation are its base class's,
:class:`~wking_device.ble._connection.SpeakerLink` (where the reasons for not using
``bleak_retry_connector.establish_connection`` are given); the adapter choice and the connection
slot are :class:`~wking_device.ble._slots.SpeakerSlots`'s; decoding what is notified, matching
responses to waiting commands and delivering events are
:class:`~wking_device.ble._notifications.SpeakerNotifications`'s. It stores nothing.
"""

from __future__ import annotations

import asyncio
import math
import time
import warnings
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from bleak.backends.device import BLEDevice

from wking_device._redact import redact
from wking_device._subscription import Subscription
from wking_device.ble._adapters import device_adapter, is_plain_adapter_name
from wking_device.ble._backend import BleBackend
from wking_device.ble._commands import SpeakerCommands
from wking_device.ble._delivery import DEFAULT_MAX_QUEUED, EventQueue
from wking_device.ble._discovery import _ADDRESS_RE, DiscoveredSpeaker
from wking_device.ble._events import EventBus, get_event_bus
from wking_device.ble._limiter import ConnectionLimiter
from wking_device.ble._notifications import _Subscription
from wking_device.ble._stream import BatteryMemory, EventStream
from wking_device.ble._translate import RetryPolicy
from wking_device.ble._values import (
    CommandFrame,
    SpeakerEvent,
    SpeakerTarget,
    _enum_value,
    _first_char,
    _opcode_name,
    _positive_seconds,
    _resolve,
    _uuid,
)
from wking_device.config import BleSettings
from wking_device.errors import (
    DeviceDisconnected,
    InvalidAddress,
    MalformedResponse,
    UnsupportedOperation,
    UsageError,
)
from wking_device.events import SpeakerEvent as SessionEvent
from wking_device.models import DeviceInfo, OperationKind
from wking_device.protocol import (
    BATTERY_LEVEL_UUID,
    FIRMWARE_REVISION_UUID,
    HARDWARE_REVISION_UUID,
    MANUFACTURER_NAME_UUID,
    MODEL_NUMBER_UUID,
    SERIAL_NUMBER_UUID,
    WKING_V1,
    DeviceProfile,
    EqPreset,
    FrameCodec,
    GetInfo,
    GetState,
    InfoResult,
    LightMode,
    Ping,
    PingResult,
    PowerOff,
    Response,
    SetEq,
    SetLight,
    SetVolume,
    StateResult,
    model_by_code,
)

if TYPE_CHECKING:
    from bleak import BleakClient

__all__ = ["DEFAULT_RECONNECT_TIMEOUT", "Speaker"]

_DEFAULTS = BleSettings()
DEFAULT_RECONNECT_TIMEOUT: Final = 15.0
"""Seconds a reconnect may take in total (``Speaker(reconnect_timeout=...)``'s default)."""


class Speaker(SpeakerCommands):
    """A session with one speaker: ``async with Speaker(target, backend=...) as speaker: ...``.

    Entering connects (waiting for a slot of the adapter's :class:`ConnectionLimiter`, then with
    bounded retries); leaving disconnects and frees the slot. A lost link fails operations in
    flight with :class:`DeviceDisconnected`; :meth:`reconnect` (or ``auto_reconnect=True``)
    connects again and restores every notification subscription.

    The first connection waits for a slot while every slot of the adapter is taken — by our
    sessions or by other connections on the adapter — for at most ``slot_timeout`` (default
    60 s) with no slot granted or given back on that adapter: each one restarts the wait, so a
    queue that moves (:func:`read_all` through fewer slots than speakers) is waited out. Past it,
    :class:`ConnectionFailed` (``reason`` ``TOO_MANY_CONNECTIONS``) names the adapter and who
    holds its slots, and no slot is kept. It then makes up to ``connect_attempts`` attempts
    (default 3) of ``connect_timeout`` each (default 10 s), with backoff between them. A
    reconnect — by :meth:`reconnect`, or by the next operation with ``auto_reconnect=True`` —
    follows the reconnect policy instead: it first looks for the address advertising (at most
    ``scan_timeout``, default 5 s), because a link that was lost is no evidence the speaker is
    still there; a speaker not seen, or one the adapter reports unknown, has gone away and the
    reconnect fails at once with :class:`DeviceDisconnected` (``reason`` ``NOT_FOUND``). Otherwise
    attempts follow as for the first connection, all within ``reconnect_timeout`` in total
    (default 15 s, scan, slot wait and backoff included; ``slot_timeout`` does not apply); past
    it, :class:`DeviceDisconnected` again, with the last attempt's error as its ``__cause__``.

    Args:
        target: A :class:`DiscoveredSpeaker`, a bleak ``BLEDevice`` or an address (found by
            scanning first).
        backend: The bleak backend pair; ``None`` for the platform default.
        profile: The vendor profile (GATT layout and codec).
        events: The operation-event bus; defaults to the process-wide bus.
        settings: Timeouts, attempts and the connection limit; defaults to ``BleSettings()``.
        limiter: The connection limiter; defaults to the shared one for ``backend`` and
            ``adapter`` with ``settings.max_connections`` slots.
        retry: Attempts and backoff; defaults to ``settings.connect_attempts`` attempts.
        connect_timeout: Seconds per connection attempt (default ``settings.connect_timeout``).
        command_timeout: Seconds per GATT operation or vendor command (default
            ``settings.command_timeout``).
        scan_timeout: Seconds to look for the address when a fresh ``BLEDevice`` is needed
            (default ``settings.scan_timeout``).
        fresh_for: A discovery result older than this many seconds is re-found before connecting.
        auto_reconnect: Reconnect on the next operation after the link was lost (under the
            reconnect policy above; default ``False``: the operation raises
            :class:`DeviceDisconnected`).
        reconnect_timeout: Seconds a reconnect may take in total (default 15 s).
        slot_timeout: Seconds the first connection waits for a slot while none is granted or
            given back on the adapter (default ``settings.slot_timeout``, 60 s); ``math.inf``:
            no bound, for a caller whose own sessions are the only ones it waits for.
        disconnected_callback: Called with this session, in the event loop's thread, each time
            an established link goes down — lost, or closed by :meth:`disconnect` (as bleak's
            ``disconnected_callback``). :meth:`events` reports the same, and more.
        close_stale: Before connecting, disconnect the speaker wherever the Bluetooth stack
            holds it connected (another program, a process of ours that died), as
            bleak-retry-connector's ``close_stale_connections`` does; see
            :func:`~wking_device.ble.close_stale_connections`.
        adapter: The adapter name (e.g. ``hci0``), passed to bleak's BlueZ backend for the
            connection and for any scan that re-finds the address (a ``target`` BlueZ saw on
            another adapter is re-found on this one: BlueZ connects through the device's path).
        adapters: Several adapters to choose from (e.g. ``["hci0", "hci1"]``). Every connect
            (and reconnect) then looks for the address on each of them at once and connects
            through the one with a free slot and the best RSSI, fewer connections breaking a
            tie (habluetooth's rule; :func:`~wking_device.ble.pick_adapter`); an adapter that
            is gone (unplugged) or does not see the speaker is passed over, so a session whose
            adapter disappears reconnects through another. :attr:`adapter` tells which one a
            connection uses. Slots are those of each adapter's shared limiter (unless
            ``limiter`` is given); when no adapter that heard the address has a free slot, the
            wait stands in all their queues and takes the first slot freed on any of them
            (:func:`~wking_device.ble.acquire_first`), bounded by ``slot_timeout`` as above,
            restarted by any of them. Default: ``settings.adapters`` (``[ble] adapters``), or one
            adapter (``adapter``) when that is empty.
    """

    def __init__(  # noqa: PLR0915 - one flat list of the session's state
        self,
        target: SpeakerTarget,
        *,
        backend: BleBackend | None = None,
        profile: DeviceProfile = WKING_V1,
        events: EventBus | None = None,
        settings: BleSettings | None = None,
        limiter: ConnectionLimiter | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float | None = None,
        command_timeout: float | None = None,
        scan_timeout: float | None = None,
        fresh_for: float = 30.0,
        auto_reconnect: bool = False,
        adapter: str | None = None,
        disconnected_callback: Callable[[Speaker], None] | None = None,
        reconnect_timeout: float = DEFAULT_RECONNECT_TIMEOUT,
        close_stale: bool = False,
        adapters: Sequence[str] | None = None,
        slot_timeout: float | None = None,
    ) -> None:
        if adapters is not None and not list(adapters):
            raise UsageError("adapters needs at least one adapter name")
        for name in [adapter, *(adapters or ())]:
            if name is not None and not is_plain_adapter_name(name):
                # never handed to the stack, whose errors would repeat it (a path, escapes)
                raise UsageError(
                    f"not an adapter name: {name[:40]!r}", remedy="use a name such as hci0"
                )
        self._adapters = list(adapters) if adapters is not None else None
        self._own_limiter = limiter is None
        self._reconnect_timeout = _positive_seconds("reconnect_timeout", reconnect_timeout)
        self._restoring = "slot"
        """What the reconnect in progress waits for: ``slot``, ``scan`` (the address to
        advertise) or ``connect``."""
        settings = settings or _DEFAULTS
        if self._adapters is None and settings.adapters:
            self._adapters = list(settings.adapters)  # `[ble] adapters` in config.toml
        self._close_stale = close_stale
        self._disconnected_callback = disconnected_callback
        self._streams: list[EventStream[SessionEvent]] = []
        self._battery = BatteryMemory()
        self._backend = backend
        self._profile = profile
        self._notify_uuid = _uuid(profile.notify_uuid)
        self._bus = events if events is not None else get_event_bus()
        self._settings = settings
        self._limiter = limiter
        self._retry = retry or RetryPolicy(attempts=settings.connect_attempts)
        self._connect_timeout = connect_timeout or settings.connect_timeout
        self._command_timeout = command_timeout or settings.command_timeout
        self._scan_timeout = scan_timeout or settings.scan_timeout
        self._slot_timeout: float | None = settings.slot_timeout
        """Seconds the first connect waits for a slot while the queue stands still (``None``:
        no bound)."""
        if slot_timeout is not None:
            self._slot_timeout = (
                None
                if slot_timeout == math.inf
                else _positive_seconds("slot_timeout", slot_timeout)
            )
        self._fresh_for = fresh_for
        self._auto_reconnect = auto_reconnect
        self._adapter = adapter if adapter is not None else settings.adapter

        self._heard: dict[str, DiscoveredSpeaker] = {}
        """With several adapters: those that heard the address at the last pick, preferred
        first (the slot wait stands in all their queues)."""
        self._discovered: DiscoveredSpeaker | None = None
        self._device: BLEDevice | None = None
        self._device_at = 0.0
        """``time.monotonic()`` when ``_device`` was last seen advertising."""
        self._address: str
        self._name: str | None = None
        self._model: str | None = None
        self._set_target(target)

        self._client: BleakClient | None = None
        self._codec: FrameCodec | None = None
        self._has_vendor = False
        self._write_response = True
        self._pending: dict[int, tuple[int, asyncio.Future[Response]]] = {}
        """Commands waiting for their response: seq -> (opcode, future)."""
        self._abandoned: dict[int, int] = {}
        """Seqs of commands that ended without their response (timeout, cancel, malformed), in
        order: the speaker may still answer them, so they are not reused while others are free."""
        self._listeners: list[EventQueue[SpeakerEvent]] = []
        self._raw_subscriptions: dict[str, Callable[[bytes], None]] = {}
        self._notifying: set[str] = set()
        self._battery_notify = False
        self._lost: asyncio.Future[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._holding_slot = False
        self._closing = False
        self._closed = False
        self.connections = 0
        """Successful connections made by this session (1 + reconnects)."""
        self.malformed = 0
        """Malformed vendor frames received and dropped (each failed at most its own command)."""

    def _set_target(self, target: SpeakerTarget) -> None:
        if isinstance(target, DiscoveredSpeaker):
            self._discovered = target
            self._device = target.device
            self._device_at = target.seen_at  # its age counts against ``fresh_for``
            self._address = target.address
            self._name = target.name
            self._model = target.model
        elif isinstance(target, BLEDevice):
            self._device = target
            self._device_at = time.monotonic()  # age unknown: taken as just seen
            self._address = target.address
            self._name = target.name
        elif isinstance(target, str) and target:
            if not _ADDRESS_RE.match(target):
                # refused at once: a name like "kitchen" would otherwise wait for a scan
                raise InvalidAddress(target)
            self._address = target
        else:
            raise UsageError(f"Speaker needs a DiscoveredSpeaker, BLEDevice or address: {target!r}")

    # --- identity -------------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The speaker's Bluetooth address."""
        return self._address

    @property
    def name(self) -> str | None:
        """The advertised name, when known."""
        return self._name

    @property
    def model(self) -> str | None:
        """The profile's model id, when known."""
        return self._model

    @property
    def rssi(self) -> int | None:
        """RSSI of the latest advertisement this session saw, when known."""
        return self._discovered.rssi if self._discovered is not None else None

    @property
    def is_connected(self) -> bool:
        """Whether the link is up."""
        client = self._client
        return client is not None and client.is_connected and not self._link_lost()

    @property
    def has_vendor_channel(self) -> bool:
        """Whether the connected speaker offers the profile's vendor service."""
        return self._has_vendor

    @property
    def adapter(self) -> str | None:
        """The adapter the current (or last) connection goes through, where the backend tells.

        From the connected ``BLEDevice`` (BlueZ: its D-Bus path; the simulator: its details),
        else the adapter asked for; ``None`` when neither is known (the default adapter).
        """
        if self._device is not None:
            seen_on = device_adapter(self._device)
            if seen_on is not None:
                return seen_on
        return self._adapter

    @property
    def limiter(self) -> ConnectionLimiter | None:
        """The connection limiter in use (known once connecting started)."""
        return self._limiter

    def __repr__(self) -> str:
        # The name is the speaker's to choose: MAC-shaped text is redacted and the rest quoted
        # with its control characters escaped, so a log line or a traceback that shows this
        # holds no address, no escape sequence and no line of the speaker's making.
        state = "connected" if self.is_connected else "disconnected"
        name = "?" if not self._name else repr(redact(self._name))
        return f"<Speaker {name} {state}>"

    # --- life cycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> Speaker:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    async def connect(self) -> None:
        """Connect (no-op when connected), subscribe to notifications and set up the codec.

        Raises:
            ConnectionFailed: No attempt succeeded (reason tells aborted / too many
                connections / failed), or no connection slot came free within
                ``slot_timeout`` (reason ``TOO_MANY_CONNECTIONS``).
            DeviceNotFound: The address did not advertise.
            AdapterUnavailable: The backend cannot connect at all.
            DeviceDisconnected: The link dropped while setting up.
        """
        await self._connect()

    async def reconnect(self) -> None:
        """Drop the link if it is up, then connect again; subscriptions are restored.

        A session that was connected before reconnects under the reconnect policy (see the
        class): bounded by ``reconnect_timeout`` in total, failing fast when the speaker is gone.

        Raises:
            DeviceDisconnected: The speaker went away (``reason`` ``NOT_FOUND``: not seen
                advertising, or unknown to the adapter) or could not be reconnected within
                ``reconnect_timeout``.
            AdapterUnavailable: The backend cannot connect at all.
        """
        if self._client is not None:
            async with self._connect_lock:
                await self._disconnect(close=False)  # the session and its streams go on
        if self.connections == 0:
            await self.connect()
        else:
            await self._restore()

    async def disconnect(self) -> None:
        """Disconnect and free the connection slot (idempotent; never raises for a lost link).

        A connect in flight in another task finishes (or fails) first and is then undone; to
        abandon it sooner, cancel that task.
        """
        async with self._connect_lock:
            await self._disconnect()

    # --- GATT reads and raw notifications -------------------------------------------------------

    def _has_char(self, uuid: str) -> bool:
        """Whether the connected speaker has the characteristic (DeviceDisconnected if down)."""
        client = self._client
        if client is None or self._link_lost():
            raise DeviceDisconnected(f"{self._address}: the link was lost", address=self._address)
        return _first_char(client.services, uuid) is not None

    async def read(self, uuid: str) -> bytes:
        """Read a characteristic.

        Args:
            uuid: The characteristic's UUID (128-bit, or the 16-bit short form, any case).

        Raises:
            UnsupportedOperation: The speaker has no such characteristic.
            OperationTimeout: No answer within the command timeout.
            DeviceDisconnected: The link is down or dropped during the read.
            GattError: The speaker answered with an ATT error.
        """
        uuid = _uuid(uuid)
        data = await self._gatt(
            OperationKind.READ,
            uuid,
            lambda client: client.read_gatt_char(_resolve(client, uuid)),
            what=f"read {uuid}",
        )
        return bytes(data)

    async def write(self, uuid: str, data: bytes, *, response: bool = True) -> None:
        """Write a characteristic (with or without response).

        Raises:
            UnsupportedOperation, OperationTimeout, DeviceDisconnected, GattError: As :meth:`read`.
            UsageError: ``data`` is not bytes.
        """
        uuid = _uuid(uuid)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise UsageError(f"data must be bytes, got {type(data).__name__}")
        await self._gatt(
            OperationKind.WRITE,
            uuid,
            lambda client: client.write_gatt_char(_resolve(client, uuid), data, response=response),
            what=f"write {uuid}",
        )

    async def _read_text(self, uuid: str) -> str | None:
        if not self._has_char(uuid):
            return None
        raw = await self.read(uuid)
        return raw.decode("utf-8", errors="replace").rstrip("\x00") or None

    async def read_battery(self) -> int:
        """Read the standard Battery Level (0x2A19), 0-100 %.

        Raises:
            UnsupportedOperation: No Battery service.
            MalformedResponse: The value is not one byte 0-100.
        """
        await self._ready()
        if not self._has_char(BATTERY_LEVEL_UUID):
            raise UnsupportedOperation(
                f"{self._address} has no Battery service", address=self._address
            )
        raw = await self.read(BATTERY_LEVEL_UUID)
        if len(raw) != 1 or raw[0] > 100:
            raise MalformedResponse(
                f"{self._address}: battery level {raw.hex()} is not one byte 0-100",
                address=self._address,
            )
        return raw[0]

    async def start_notify(self, uuid: str, callback: Callable[[bytes], None]) -> None:
        """Subscribe to raw notifications of any characteristic; restored after a reconnect.

        The profile's vendor channel and the battery level are subscribed already; use
        :meth:`subscribe` for their decoded events.

        Args:
            uuid: The characteristic's UUID.
            callback: Receives each notified value.
        """
        uuid = _uuid(uuid)  # one key per characteristic, however the caller spells it
        self._raw_subscriptions[uuid] = callback
        if self._client is not None and not self._link_lost():
            await self._start_notify(uuid)

    async def stop_notify(self, uuid: str) -> None:
        """Undo :meth:`start_notify` (the session's own subscriptions stay)."""
        uuid = _uuid(uuid)
        self._raw_subscriptions.pop(uuid, None)
        internal = {BATTERY_LEVEL_UUID, self._notify_uuid}
        if uuid in self._notifying and uuid not in internal and self.is_connected:
            self._notifying.discard(uuid)
            await self._gatt(
                OperationKind.SUBSCRIBE,
                uuid,
                lambda client: client.stop_notify(_resolve(client, uuid)),
            )

    # --- notifications --------------------------------------------------------------------------

    def subscribe(
        self, callback: Callable[[SpeakerEvent], None], *, max_queued: int = DEFAULT_MAX_QUEUED
    ) -> Subscription:
        """Receive the speaker's unsolicited events (vendor events and battery readings).

        Deprecated (a ``DeprecationWarning``): use :meth:`events`, which delivers one event
        vocabulary (:mod:`wking_device.events`) and each battery change once; this older
        vocabulary can deliver one battery change twice (a vendor event and a
        :class:`BatteryReading`).

        Subscriptions belong to the session: they survive reconnects. Each subscriber has its
        own bounded queue, emptied by a task, so a slow subscriber never delays responses to
        commands; one that falls ``max_queued`` events behind loses the oldest (counted in
        :attr:`events_dropped`, logged as a warning).

        Args:
            callback: Called in the event loop's thread with each :data:`SpeakerEvent`, in order,
                soon after it arrived (not inside the notification callback).
            max_queued: Events held for this subscriber before the oldest is dropped.

        Returns:
            A :class:`~wking_device.Subscription` (call it, ``close()`` it or leave its
            ``with`` block to unsubscribe; events still queued for it are discarded).

        Raises:
            UsageError: ``max_queued`` is below 1.
        """
        warnings.warn(
            "Speaker.subscribe() is deprecated; use 'async with speaker.events() as events' "
            "(one event vocabulary, each battery change once)",
            DeprecationWarning,
            stacklevel=2,
        )
        queue: EventQueue[SpeakerEvent] = EventQueue(callback, max_queued=max_queued)
        self._listeners.append(queue)
        return _Subscription(self, queue)

    @property
    def events_dropped(self) -> int:
        """Events dropped for current subscribers that fell ``max_queued`` behind."""
        return sum(queue.dropped for queue in self._listeners)

    def events(self, *, max_queue: int = 256) -> EventStream[SessionEvent]:
        """The session's events, for ``async for`` (one vocabulary: :mod:`wking_device.events`).

        ``async with speaker.events() as stream: async for event in stream: ...`` — link up
        and down (:class:`~wking_device.events.Connected`,
        :class:`~wking_device.events.Disconnected`), one
        :class:`~wking_device.events.BatteryChanged` per battery change, and the vendor events.
        The stream survives reconnects (:meth:`reconnect` too) and ends when the session is
        closed by :meth:`disconnect`, also when the link was down already.

        Args:
            max_queue: Most events kept for a slow consumer (the oldest go first, counted in
                ``stream.dropped``).

        Returns:
            The stream, subscribed from now on.
        """
        stream: EventStream[SessionEvent] = EventStream(self._streams.remove, max_queue=max_queue)
        self._streams.append(stream)
        return stream

    # --- vendor commands ------------------------------------------------------------------------

    async def command(self, build: Callable[[int], CommandFrame]) -> Response:
        """Send one vendor command and wait for its response (correlated by sequence number).

        Args:
            build: Makes the command from the sequence number, e.g.
                ``lambda seq: SetVolume(seq=seq, volume=30)``.

        Returns:
            The OK response.

        Raises:
            UnsupportedOperation: The speaker has no vendor channel, or answered UNSUPPORTED.
            CommandRejected: The speaker answered with another error status.
            OperationTimeout: No response within the command timeout.
            MalformedResponse: The response did not decode; the session stays usable.
            DeviceDisconnected: The link is down or dropped while waiting.
        """
        client = await self._ready()
        codec = self._codec
        if not self._has_vendor or codec is None:
            raise UnsupportedOperation(
                f"{self._address} has no {self._profile.id} vendor service",
                address=self._address,
                remedy="standard information ('wking info') works; control needs a W-KING speaker",
            )
        seq = self._take_seq(codec)
        frame = build(seq)
        opcode = int(frame.opcode)
        what = _opcode_name(opcode)
        timer = self._timer(
            OperationKind.COMMAND,
            detail={"opcode": opcode, "command": what, "seq": seq},
        )
        lost = self._lost
        assert lost is not None
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        waiter = (opcode, future)
        self._pending[seq] = waiter
        try:
            response = await self._exchange(client, codec, frame, future, lost)
            timer.detail["status"] = response.status.name
            self._check_status(response, what)
        except BaseException as exc:
            if self._pending.get(seq) is waiter:
                del self._pending[seq]
            answered = future.done() and not future.cancelled() and future.exception() is None
            if not answered and not lost.done():
                # The speaker may still answer: keep this seq out of use while others are free.
                self._abandoned.pop(seq, None)
                self._abandoned[seq] = opcode
            timer.fail(exc)
            raise
        timer.ok()
        return response

    async def get_info(self) -> InfoResult:
        """Vendor GET_INFO: model code, firmware, hardware revision, serial number."""
        response = await self.command(lambda seq: GetInfo(seq=seq))
        assert isinstance(response.result, InfoResult)
        return response.result

    async def get_state(self) -> StateResult:
        """Vendor GET_STATE: volume, EQ, light, power, battery, charging."""
        response = await self.command(lambda seq: GetState(seq=seq))
        assert isinstance(response.result, StateResult)
        return response.result

    async def set_volume(self, volume: int) -> None:
        """Set the volume, 0-100 (``UsageError`` outside that range)."""
        SetVolume(seq=0, volume=volume)  # validate before touching the link
        await self.command(lambda seq: SetVolume(seq=seq, volume=volume))

    async def set_eq(self, preset: EqPreset | int | str) -> None:
        """Select an EQ preset (an :class:`EqPreset`, its value or its name, any case)."""
        value = _enum_value(EqPreset, preset)
        await self.command(lambda seq: SetEq(seq=seq, preset=value))

    async def set_light(self, mode: LightMode | int | str) -> None:
        """Select a light mode (a :class:`LightMode`, its value or its name, any case)."""
        value = _enum_value(LightMode, mode)
        await self.command(lambda seq: SetLight(seq=seq, mode=value))

    async def power_off(self) -> None:
        """Ask the speaker to power off; it answers, then drops the link."""
        await self.command(lambda seq: PowerOff(seq=seq))

    async def ping(self, data: bytes = b"") -> float:
        """Round trip over the vendor channel.

        Args:
            data: Bytes the speaker must echo.

        Returns:
            The round-trip time in seconds.

        Raises:
            MalformedResponse: The echo differs from ``data``.
        """
        started = time.monotonic()
        response = await self.command(lambda seq: Ping(seq=seq, data=data))
        elapsed = time.monotonic() - started
        if not isinstance(response.result, PingResult) or response.result.data != data:
            raise MalformedResponse(
                f"{self._address}: ping echo does not match", address=self._address
            )
        return elapsed

    # --- information ----------------------------------------------------------------------------

    async def read_info(self) -> DeviceInfo:
        """Read what the speaker tells about itself.

        Standard Device Information and Battery are read when present (any BLE device); the
        vendor channel adds model, volume, EQ and light when the speaker has it.

        Returns:
            The validated information.
        """
        timer = self._timer(OperationKind.INFO)
        try:
            info = await self._read_info()
        except BaseException as exc:
            timer.fail(exc)
            raise
        timer.ok()
        return info

    async def _read_info(self) -> DeviceInfo:
        await self._ready()
        fields: dict[str, Any] = {
            "address": self._address,
            "name": self._name,
            "model": self._model,
            "rssi": self.rssi,
            "manufacturer": await self._read_text(MANUFACTURER_NAME_UUID),
            "model_number": await self._read_text(MODEL_NUMBER_UUID),
            "firmware": await self._read_text(FIRMWARE_REVISION_UUID),
            "hardware": await self._read_text(HARDWARE_REVISION_UUID),
        }
        if self._has_char(BATTERY_LEVEL_UUID):
            fields["battery"] = await self.read_battery()
        if self._has_vendor:
            state = await self.get_state()
            fields.update(
                volume=state.volume,
                eq=state.eq.name.lower(),
                light=state.light.name.lower(),
            )
            if fields.get("battery") is None:
                fields["battery"] = state.battery
            if fields["model"] in (None, "unknown"):
                vendor = await self.get_info()
                model = model_by_code(vendor.model_code)
                if model is not None:
                    fields["model"] = self._model = model.id
                fields["firmware"] = fields["firmware"] or vendor.firmware_version
                fields["hardware"] = fields["hardware"] or vendor.hardware_version
        return DeviceInfo(**fields)

    async def read_serial_number(self) -> str | None:
        """The Device Information serial number (0x2A25), when present."""
        await self._ready()
        return await self._read_text(SERIAL_NUMBER_UUID)
