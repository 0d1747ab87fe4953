"""A speaker session's connection life cycle: connect with retries, slots, reconnect, teardown.

This module owns :class:`SpeakerLink`, the base of :class:`~wking_device.ble.Speaker` that keeps
the link: connecting with bounded retries and backoff from a fresh ``BLEDevice``, the
reconnect policy (one total deadline; a speaker gone fails at once), the set-up of a fresh
connection (services, codec, one bleak subscription per characteristic, restored after a
reconnect), noticing a lost link and failing what waits on it, and the guarded GATT operation
every read, write and subscription goes through (the link's loss and the command timeout bound
it; bleak's errors become :mod:`wking_device.errors`). It does not decode notifications or
deliver events (see :mod:`._notifications`), choose an adapter or take and give back the
connection slot (see :mod:`._slots`, which its ``_connect`` calls) or send vendor commands (see
:mod:`._speaker`); the public methods and the state's initialisation live on
:class:`~wking_device.ble.Speaker`, this class only declares the state.

Why not ``bleak_retry_connector.establish_connection``? It is the field's reference and this
module follows its classification (``_translate``) and backoff table, but:

* it reports nothing per attempt, while every attempt here must emit an operation event with its
  number and outcome (RETRY / ERROR / OK);
* transient errors do not count against its ``max_attempts`` (up to 9 more attempts), and its
  connect timeout (20 s) and safety timeout (60 s) are fixed, while ``ble.connect_attempts`` and
  ``ble.connect_timeout`` must bound a connection exactly;
* on Linux it asks BlueZ over D-Bus for already-connected devices before every connection, which
  a simulated backend (or a machine without BlueZ) does not have.

So the retry loop lives here, and a retry re-finds the device by address when the previous
``BLEDevice`` is stale or the stack lost it (DESIGN §6: always a fresh ``BLEDevice``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, TypeVar

from bleak import BleakClient

from wking_device.ble._adapters import close_stale_connections
from wking_device.ble._discovery import find_speaker
from wking_device.ble._events import OpTimer
from wking_device.ble._translate import is_caller_cancelled, is_transient, translate
from wking_device.ble._values import _first, _first_char, _fragment_mtu, _resolve
from wking_device.errors import (
    AdapterUnavailable,
    BluetoothError,
    BluetoothReason,
    ConnectionFailed,
    DeviceDisconnected,
    DeviceNotFound,
    OperationTimeout,
    UnsupportedOperation,
)
from wking_device.events import Connected, Disconnected
from wking_device.models import OperationKind
from wking_device.protocol import BATTERY_LEVEL_UUID, Role

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from bleak.backends.characteristic import BleakGATTCharacteristic
    from bleak.backends.device import BLEDevice

    from wking_device.ble._backend import BleBackend
    from wking_device.ble._discovery import DiscoveredSpeaker
    from wking_device.ble._events import EventBus
    from wking_device.ble._limiter import ConnectionLimiter
    from wking_device.ble._stream import EventStream
    from wking_device.ble._translate import RetryPolicy
    from wking_device.config import BleSettings
    from wking_device.events import SpeakerEvent as SessionEvent
    from wking_device.protocol import DeviceProfile, FrameCodec, Response

__all__ = ["SpeakerLink"]

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")
_DISCONNECT_TIMEOUT = 5.0
"""Bound on a local disconnect: bumble's can hang when the peer vanished (simulator gap D)."""


class SpeakerLink:
    """The connection life cycle of a :class:`~wking_device.ble.Speaker` (its base class).

    The state is initialised by ``Speaker.__init__`` (one flat list, beside the documented
    arguments); it is declared here for the methods that keep the link.
    """

    if TYPE_CHECKING:  # declared for the type checker only: no annotations at run time
        _adapters: list[str] | None
        _own_limiter: bool
        _reconnect_timeout: float
        _restoring: str
        _close_stale: bool
        _disconnected_callback: Callable[[Any], None] | None
        _streams: list[EventStream[SessionEvent]]
        _backend: BleBackend | None
        _profile: DeviceProfile
        _notify_uuid: str
        _bus: EventBus
        _settings: BleSettings
        _limiter: ConnectionLimiter | None
        _retry: RetryPolicy
        _connect_timeout: float
        _command_timeout: float
        _scan_timeout: float
        _slot_timeout: float | None
        _fresh_for: float
        _auto_reconnect: bool
        _adapter: str | None
        _heard: dict[str, DiscoveredSpeaker]
        _discovered: DiscoveredSpeaker | None
        _device: BLEDevice | None
        _device_at: float
        _address: str
        _name: str | None
        _model: str | None
        _client: BleakClient | None
        _codec: FrameCodec | None
        _has_vendor: bool
        _write_response: bool
        _pending: dict[int, tuple[int, asyncio.Future[Response]]]
        _abandoned: dict[int, int]
        _raw_subscriptions: dict[str, Callable[[bytes], None]]
        _notifying: set[str]
        _battery_notify: bool
        _lost: asyncio.Future[None] | None
        _connect_lock: asyncio.Lock
        _holding_slot: bool
        _closing: bool
        _closed: bool
        connections: int

        # Provided by the classes above: Speaker's public face, SpeakerNotifications' decoding,
        # SpeakerSlots' adapter choice and connection slot.

        @property
        def adapter(self) -> str | None: ...

        @property
        def is_connected(self) -> bool: ...

        async def connect(self) -> None: ...

        def _stream(self, frame: Any) -> None: ...

        def _on_vendor_data(self, data: bytes) -> None: ...

        def _on_battery_data(self, data: bytes) -> None: ...

        async def _pick_adapter(self, deadline: float | None) -> None: ...

        async def _acquire_slot(self, deadline: float | None = None) -> None: ...

        def _release_slot(self) -> None: ...

    # --- life cycle -----------------------------------------------------------------------------

    async def _connect(self, deadline: float | None = None) -> None:
        """Connect; ``deadline`` (``loop.time()``) marks a reconnect under the policy."""
        async with self._connect_lock:
            if self.is_connected:
                return
            self._closing = False
            self._closed = False
            if self._close_stale:
                adapters: list[str | None] = (
                    list(self._adapters) if self._adapters else [self._adapter]
                )
                for each in adapters:
                    await close_stale_connections(
                        self._address,
                        backend=self._backend,
                        adapter=each,
                        profile=self._profile,
                    )
            picked = False
            if self._adapters is not None:
                await self._pick_adapter(deadline)
                picked = True
            await self._acquire_slot(deadline)
            client: BleakClient | None = None
            try:
                client = await self._connect_with_retries(deadline, picked=picked)
                _LOGGER.debug("%s connected through %s", self._address, self.adapter or "default")
                await self._set_up(client)
            except BaseException:
                self._closing = True
                try:
                    if client is not None:
                        await self._abandon(client)
                finally:
                    await self._teardown()  # the slot is freed even if the cleanup is cancelled
                raise

    async def _restore(self) -> None:
        """Reconnect under the policy: one total deadline; a speaker gone fails at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._reconnect_timeout
        self._restoring = "slot"
        try:
            async with asyncio.timeout_at(deadline):
                await self._connect(deadline)
        except TimeoutError as exc:
            if self._restoring != "scan":
                raise self._restore_failed(exc) from exc
            # the deadline fell while looking for the address: it is not advertising
            raise DeviceDisconnected(
                f"{self._address} went away: not seen advertising within "
                f"{self._reconnect_timeout:g} s",
                address=self._address,
                reason=BluetoothReason.NOT_FOUND,
                remedy=DeviceNotFound.default_remedy,
                cli_remedy=DeviceNotFound.default_cli_remedy,
            ) from DeviceNotFound(str(exc) or "out of time", address=self._address)
        except DeviceNotFound as exc:
            raise DeviceDisconnected(
                f"{self._address} went away: {exc.message}",
                address=self._address,
                reason=BluetoothReason.NOT_FOUND,
                remedy=DeviceNotFound.default_remedy,
                cli_remedy=DeviceNotFound.default_cli_remedy,
            ) from exc
        except (ConnectionFailed, OperationTimeout) as exc:
            raise self._restore_failed(exc) from exc

    def _restore_failed(self, exc: Exception) -> DeviceDisconnected:
        waiting = "a connection slot" if self._restoring == "slot" else "the connection"
        why = (
            exc.message if isinstance(exc, BluetoothError) else f"out of time waiting for {waiting}"
        )
        return DeviceDisconnected(
            f"{self._address}: the link was lost and could not be restored within "
            f"{self._reconnect_timeout:g} s ({why})",
            address=self._address,
            reason=exc.reason if isinstance(exc, BluetoothError) else None,
        )

    async def _disconnect(self, *, close: bool = True) -> None:
        """Drop the link; with ``close`` (not for a reconnect), close the session: end its streams.

        The streams end also when the link was down already (lost, or never up).
        """
        self._closing = True
        client = self._client
        if client is None:
            await self._teardown()
            if close:
                self._close_streams()
            return
        timer = self._timer(OperationKind.DISCONNECT)
        try:
            if client.is_connected:
                async with asyncio.timeout(_DISCONNECT_TIMEOUT):
                    await client.disconnect()
        except asyncio.CancelledError:
            timer.fail(asyncio.CancelledError())
            await self._teardown()
            raise
        except Exception as exc:  # noqa: BLE001 - the link is being dropped anyway
            error = translate(exc, address=self._address, operation="disconnect")
            _LOGGER.debug("disconnect from %s: %s", self._address, error)
            timer.fail(error)
        else:
            timer.ok()
        await self._teardown()
        if close:
            self._close_streams()

    def _close_streams(self) -> None:
        """The session is closed: no reconnect on the next operation, and its streams end."""
        self._closed = True
        for stream in list(self._streams):
            stream.end()

    async def _teardown(self) -> None:
        """Forget the connection: fail pending commands, drop the codec, free the slot."""
        self._mark_lost(DeviceDisconnected(f"{self._address}: disconnected", address=self._address))
        self._client = None
        self._codec = None
        self._release_slot()

    # --- connecting -----------------------------------------------------------------------------

    async def _fresh_device(self, *, force: bool, window: float | None = None) -> BLEDevice:
        """A ``BLEDevice`` seen recently, re-found by address when stale, missing or forced."""
        stale = time.monotonic() - self._device_at > self._fresh_for
        self._restoring = "connect"  # what follows, unless a scan comes first
        if self._device is not None and not force and not stale and not self._elsewhere():
            return self._device
        self._restoring = "scan"
        found = await find_speaker(
            self._address,
            timeout=self._scan_timeout if window is None else window,
            backend=self._backend,
            profile=self._profile,
            events=self._bus,
            adapter=self._adapter,  # a device found on another adapter connects through that one
        )
        self._discovered = found
        self._device = found.device
        self._device_at = found.seen_at
        self._restoring = "connect"
        self._name = found.name or self._name
        self._model = found.model or self._model
        return found.device

    def _elsewhere(self) -> bool:
        """Whether BlueZ saw the device on an adapter other than the one asked for.

        BlueZ connects through the adapter in the ``BLEDevice``'s D-Bus path, whatever
        ``bluez={"adapter": ...}`` says, so such a device must be re-found on our adapter.
        """
        if self._adapter is None or self._device is None:
            return False
        details: Any = self._device.details
        path = details.get("path") if isinstance(details, dict) else None
        return isinstance(path, str) and not path.startswith(f"/org/bluez/{self._adapter}/")

    async def _connect_with_retries(
        self, deadline: float | None = None, *, picked: bool = False
    ) -> BleakClient:
        """Connect with bounded attempts; with a ``deadline`` (a reconnect), under the policy.

        Under the policy the first attempt always re-finds the address (a lost link is no
        evidence the speaker is still there), a :class:`DeviceNotFound` ends the loop at once
        (the speaker went away), and every scan, attempt and backoff fits before the deadline.
        """
        loop = asyncio.get_running_loop()
        attempts = self._retry.attempts
        last: BluetoothError | None = None
        connect_timeout = self._connect_timeout
        for attempt in range(1, attempts + 1):
            # Re-find the device when the previous attempt suggests the stack lost it.
            force = (deadline is not None and attempt == 1 and not picked) or (
                last is not None
                and last.reason in {BluetoothReason.NOT_FOUND, BluetoothReason.CONNECTION_ABORTED}
            )
            scan_window = None if deadline is None else self._window(self._scan_timeout, deadline)
            try:
                device = await self._fresh_device(force=force, window=scan_window)
            except DeviceNotFound as exc:
                last = exc
                if attempt == attempts or self._device is None or deadline is not None:
                    raise
                await asyncio.sleep(self._retry.delay(attempt, exc))
                continue
            if deadline is not None:
                connect_timeout = self._window(self._connect_timeout, deadline)
            timer = self._timer(OperationKind.CONNECT, attempt=attempt)
            client: BleakClient | None = None
            try:
                # Constructing is inside: bleak picks (and imports) the platform backend here,
                # and a backend may refuse the device (e.g. a BLEDevice of another backend).
                client = BleakClient(
                    device,
                    disconnected_callback=self._on_disconnected,
                    timeout=connect_timeout,
                    backend=self._backend.client if self._backend is not None else None,
                    bluez={"adapter": self._adapter} if self._adapter else {},
                )
                # bleak applies the timeout itself; the outer bound covers backends that do not.
                async with asyncio.timeout(connect_timeout + 1.0):
                    await client.connect()
            except asyncio.CancelledError as exc:
                if is_caller_cancelled():
                    timer.fail(exc)
                    if client is not None:
                        await self._abandon(client)
                    raise
                error = _connect_error(exc, self._address)
            except Exception as exc:  # noqa: BLE001 - translated; the loop decides on retry
                error = _connect_error(exc, self._address)
            else:
                timer.ok()
                return client
            if client is not None:
                await self._abandon(client)
            last = error
            delay = self._retry.delay(attempt, error)
            out_of_time = deadline is not None and loop.time() + delay >= deadline
            gone = deadline is not None and isinstance(error, DeviceNotFound)
            if not is_transient(error) or attempt == attempts or out_of_time or gone:
                final = self._final_connect_error(error, attempt)
                timer.fail(final)
                raise final from error
            timer.retry(error)
            _LOGGER.debug(
                "connect %s attempt %d/%d failed (%s); retrying in %.2f s",
                self._address,
                attempt,
                attempts,
                error.message,
                delay,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _window(seconds: float, deadline: float) -> float:
        """``seconds``, cut to what is left before ``deadline`` (``loop.time()``)."""
        return max(0.0, min(seconds, deadline - asyncio.get_running_loop().time()))

    def _final_connect_error(self, error: BluetoothError, attempts: int) -> BluetoothError:
        if isinstance(error, AdapterUnavailable | DeviceNotFound | UnsupportedOperation):
            return error
        reason = error.reason
        if reason not in {BluetoothReason.CONNECTION_ABORTED, BluetoothReason.TOO_MANY_CONNECTIONS}:
            reason = BluetoothReason.CONNECTION_FAILED
        plural = "attempt" if attempts == 1 else "attempts"
        remedy = error.remedy if reason is not BluetoothReason.CONNECTION_FAILED else None
        return ConnectionFailed(
            f"could not connect to {self._address} after {attempts} {plural}: {error.message}",
            address=self._address,
            reason=reason,
            remedy=remedy,
        )

    async def _abandon(self, client: BleakClient) -> None:
        """Best-effort cleanup of a failed attempt, so the stack holds no pending connection.

        Failures are swallowed, but not the caller's cancellation: swallowing it would let a
        connect run on past its caller's ``asyncio.timeout``.
        """
        try:
            async with asyncio.timeout(_DISCONNECT_TIMEOUT):
                await client.disconnect()
        except asyncio.CancelledError:
            if is_caller_cancelled():
                raise
        except Exception as exc:  # noqa: BLE001 - the attempt failed already; cleanup is best effort
            _LOGGER.debug("cleaning up a failed connection to %s: %r", self._address, exc)

    async def _set_up(self, client: BleakClient) -> None:
        """Services, codec and subscriptions of a fresh connection."""
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        self._client = client
        self.connections += 1
        self._abandoned.clear()  # a new link: nothing sent on the old one can be answered here
        timer = self._timer(OperationKind.SERVICES)
        try:
            services = client.services
            vendor = _first(services.services.values(), self._profile.service_uuid)
            command_char = _first_char(services, self._profile.command_uuid)
            notify_char = _first_char(services, self._profile.notify_uuid)
            battery_char = _first_char(services, BATTERY_LEVEL_UUID)
            timer.detail.update(
                services=len(services.services), characteristics=len(services.characteristics)
            )
        except Exception as exc:
            error = translate(exc, address=self._address, operation="discover services")
            timer.fail(error)
            raise error from exc
        timer.ok()
        self._has_vendor = (
            vendor is not None and command_char is not None and notify_char is not None
        )
        self._notifying = set()
        self._battery_notify = battery_char is not None and "notify" in battery_char.properties
        if self._has_vendor:
            assert command_char is not None
            self._write_response = "write" in command_char.properties
            mtu = _fragment_mtu(command_char)
            self._codec = self._profile.new_codec(Role.CENTRAL, mtu=mtu)
            await self._start_notify(self._notify_uuid)
        if self._battery_notify:
            await self._start_notify(BATTERY_LEVEL_UUID)
        # Re-subscription after a reconnect (DESIGN §6): the session's raw subscriptions too.
        for uuid in list(self._raw_subscriptions):
            await self._start_notify(uuid)
        self._stream(Connected(reconnect=self.connections > 1))

    async def _start_notify(self, uuid: str) -> None:
        """One bleak subscription per characteristic, dispatching to every interested handler.

        bleak keeps one callback per characteristic, so the vendor channel, the battery reading
        and a caller's raw subscription to the same characteristic share one subscription.
        """
        if uuid in self._notifying:
            return

        def on_notify(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            self._on_notify(uuid, bytes(data))

        await self._gatt(
            OperationKind.SUBSCRIBE,
            uuid,
            lambda client: client.start_notify(_resolve(client, uuid), on_notify),
            reconnect=False,
        )
        self._notifying.add(uuid)

    def _on_notify(self, uuid: str, data: bytes) -> None:
        if uuid == self._notify_uuid and self._has_vendor:
            self._on_vendor_data(data)
        elif uuid == BATTERY_LEVEL_UUID and self._battery_notify:
            self._on_battery_data(data)
        callback = self._raw_subscriptions.get(uuid)
        if callback is not None:
            self._timer(OperationKind.NOTIFY, detail={"char": uuid, "size": len(data)}).ok()
            try:
                callback(data)
            except Exception:
                _LOGGER.exception("notification callback for %s raised", uuid)

    def _on_disconnected(self, client: BleakClient) -> None:
        """Handle bleak's disconnected callback (also fired by a local disconnect, as on BlueZ)."""
        if client is not self._client:
            return
        if self._closing:
            return
        _LOGGER.debug("%s: link lost", self._address)
        error = DeviceDisconnected(f"{self._address}: the link was lost", address=self._address)
        self._timer(OperationKind.DISCONNECT).fail(error)
        self._mark_lost(error)
        self._client = None
        self._codec = None
        self._release_slot()

    def _link_went_down(self) -> None:
        """Tell ``disconnected_callback`` and the event streams that the link went down."""
        self._stream(Disconnected(expected=self._closing))
        if self._disconnected_callback is not None:
            try:
                self._disconnected_callback(self)
            except Exception:
                _LOGGER.exception("disconnected_callback raised; ignored")

    def _link_lost(self) -> bool:
        return self._lost is None or self._lost.done()

    def _mark_lost(self, error: DeviceDisconnected) -> None:
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
            self._link_went_down()
        pending, self._pending = self._pending, {}
        for _opcode, future in pending.values():
            if not future.done():
                future.set_exception(error)
                # Retrieved by the waiting command; mark it so an orphan does not log.
                future.exception()

    # --- the guarded operation ------------------------------------------------------------------

    async def _ready(self, *, reconnect: bool = True) -> BleakClient:
        client = self._client
        if client is not None and not self._link_lost():
            return client
        if reconnect and self._auto_reconnect and not self._closed:
            await (self.connect() if self.connections == 0 else self._restore())
            if self._client is not None:
                return self._client
        raise DeviceDisconnected(
            f"{self._address} is not connected",
            address=self._address,
            remedy="connect first (async with Speaker(...)), or call reconnect()",
        )

    async def _race(self, awaitable: Awaitable[_T], lost: asyncio.Future[None]) -> _T:
        """Await ``awaitable`` unless the link is lost first (then DeviceDisconnected)."""
        task = asyncio.ensure_future(awaitable)
        try:
            await asyncio.wait((task, lost), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    if is_caller_cancelled():
                        raise  # the caller was cancelled meanwhile: that must reach it
                except Exception:  # noqa: BLE001, S110 - the operation was abandoned
                    pass
        if task.cancelled() or (not task.done()):
            raise DeviceDisconnected(f"{self._address}: the link was lost", address=self._address)
        return task.result()

    async def _gatt(
        self,
        kind: OperationKind,
        uuid: str,
        operation: Callable[[BleakClient], Awaitable[_T]],
        *,
        what: str | None = None,
        reconnect: bool = True,
    ) -> _T:
        client = await self._ready(reconnect=reconnect)
        lost = self._lost
        assert lost is not None
        timer = self._timer(kind, detail={"char": uuid})
        label = what or f"{kind.value} {uuid}"
        try:
            async with asyncio.timeout(self._command_timeout):
                result = await self._race(operation(client), lost)
        except asyncio.CancelledError as exc:
            if is_caller_cancelled():
                timer.fail(exc)
                raise
            error: BluetoothError = DeviceDisconnected(
                f"{label} on {self._address}: the link was lost", address=self._address
            )
            timer.fail(error)
            raise error from exc
        except Exception as exc:
            error = translate(exc, address=self._address, operation=label)
            if lost.done() and not isinstance(error, DeviceDisconnected):
                error = DeviceDisconnected(
                    f"{label} on {self._address}: the link was lost", address=self._address
                )
            timer.fail(error)
            raise error from exc
        timer.ok()
        return result

    # --- helpers --------------------------------------------------------------------------------

    def _timer(
        self,
        kind: OperationKind,
        *,
        attempt: int = 1,
        detail: dict[str, Any] | None = None,
    ) -> OpTimer:
        return OpTimer(
            self._bus,
            kind,
            address=self._address,
            name=self._name,
            model=self._model,
            attempt=attempt,
            detail=detail,
        )


def _connect_error(exc: BaseException, address: str) -> BluetoothError:
    """A failed attempt's typed error, with bleak's error as its cause.

    The final error is raised ``from`` this one, so the foreign error stays in the chain.
    """
    error = translate(exc, address=address, operation="connect", connecting=True)
    if error is not exc and error.__cause__ is None:
        error.__cause__ = exc
    return error
