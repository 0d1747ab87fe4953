"""The bleak client backend over the simulated world's adapter (a bumble central).

This module owns :class:`SimClient` (a ``BaseBleakClient``): connect through the world's adapter
(one connect at a time, as a controller allows), MTU exchange and service discovery into bleak's
GATT objects, reads, writes, notifications, and the translation of bumble's exceptions into what
bleak's BlueZ backend raises, so that code above (and bleak-retry-connector) sees the same errors
as on a real adapter. It also holds the GATT-client workarounds for bumble 0.0.236:

- E: link loss during a request surfaces in bumble as ``asyncio.CancelledError``; it becomes a
  bleak error here, while a real cancellation of the caller (``Task.cancelling()``) propagates.
- F: after a caller abandoned a request (its own timeout), bumble would take the late response
  for the next request. Requests are serialised per connection and the next one waits until the
  abandoned one's response has arrived (and is discarded), as BlueZ does.

Where bleak's BlueZ backend has behaviour of its own, this backend mirrors it: a client made from
an address string scans for the device first (``BleakDeviceNotFoundError`` when it does not
advertise within the timeout); ``services=`` keeps only the listed services in
``client.services`` (BlueZ resolves them all, bleak filters); ``use_cached=True`` returns the
value BlueZ holds (the last one read or notified on this connection); on connect the central
enables indications of the peer's Service Changed characteristic, as BlueZ's GATT client does;
``unpair()`` disconnects and forgets the device; ``connect(dangerous_use_bleak_cache=True)``
reuses the service set the last connection to the device resolved, as bleak's BlueZ manager
returns its cached collection (filter included) instead of the one ``services=`` asks for.

It does not match W-KING speakers or decode vendor frames (the BLE layer does).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from bleak import BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import (
    BleakDBusError,
    BleakDeviceNotFoundError,
    BleakError,
    BleakGATTProtocolError,
    BleakGATTProtocolErrorCode,
)
from bumble import att, core, hci
from bumble.gatt import Characteristic

from wking_device.sim._scanner import SimDeviceDetails
from wking_device.sim._stack import CONNECTION_TIMEOUT

if TYPE_CHECKING:
    from bumble.device import Connection, Peer
    from bumble.gatt_client import CharacteristicProxy, Client

    from wking_device.sim._world import SimWorld

__all__ = [
    "ABORT_ERROR",
    "CONNECTION_LIMIT_ERROR",
    "NOT_CONNECTED_ERROR",
    "SimClient",
    "bleak_uuid",
]

_LOGGER = logging.getLogger(__name__)

#: What BlueZ reports for a connection attempt the controller aborted (bleak-retry-connector
#: classifies it as transient and retries with backoff).
ABORT_ERROR = ("org.bluez.Error.Failed", ["le-connection-abort-by-local"])
#: What BlueZ reports for a GATT operation on a link that is gone.
NOT_CONNECTED_ERROR = ("org.bluez.Error.Failed", ["Not connected"])
#: BlueZ's answers to StartNotify/StopNotify/WriteValue it refuses (src/gatt-client.c).
NOT_SUPPORTED_ERROR = ("org.bluez.Error.NotSupported", ["Operation is not supported"])
ALREADY_NOTIFYING_ERROR = ("org.bluez.Error.Failed", ["Already notifying"])
NO_NOTIFY_SESSION_ERROR = ("org.bluez.Error.Failed", ["No notify session started"])
WRITE_FAILED_ERROR = ("org.bluez.Error.Failed", ["Failed to initiate write"])
#: BlueZ's string for a connection the controller refused for lack of slots (HCI 0x09,
#: Connection Limit Exceeded, reaches bluetoothd as EMLINK).
CONNECTION_LIMIT_ERROR = ("org.bluez.Error.Failed", ["le-connection-concurrent-connection-limit"])
_ABORT_STATUSES = frozenset(
    {
        hci.HCI_ErrorCode.CONNECTION_FAILED_TO_BE_ESTABLISHED_ERROR,
        hci.HCI_ErrorCode.CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR,
    }
)
_REQUEST_MTU = 517
_ATT_TIMEOUT = 30.0
_DISCONNECT_TIMEOUT = 5.0
_POLL_S = 0.02
# BlueZ handles the GAP (0x1800) and GATT (0x1801) services itself and does not export them.
_GATT_SERVICE_UUID = "00001801-0000-1000-8000-00805f9b34fb"
_SERVICE_CHANGED_UUID = "00002a05-0000-1000-8000-00805f9b34fb"
_HIDDEN_SERVICES = frozenset({"00001800-0000-1000-8000-00805f9b34fb", _GATT_SERVICE_UUID})
_PROPERTY_NAMES = (
    (Characteristic.Properties.BROADCAST, "broadcast"),
    (Characteristic.Properties.READ, "read"),
    (Characteristic.Properties.WRITE_WITHOUT_RESPONSE, "write-without-response"),
    (Characteristic.Properties.WRITE, "write"),
    (Characteristic.Properties.NOTIFY, "notify"),
    (Characteristic.Properties.INDICATE, "indicate"),
    (Characteristic.Properties.AUTHENTICATED_SIGNED_WRITES, "authenticated-signed-writes"),
    (Characteristic.Properties.EXTENDED_PROPERTIES, "extended-properties"),
)


#: Per world and address, the service UUIDs the last connection kept: bleak's BlueZ manager
#: caches the collection it built per device path, until BlueZ removes the device.
_SERVICES_CACHE: weakref.WeakKeyDictionary[SimWorld, dict[str, frozenset[str]]] = (
    weakref.WeakKeyDictionary()
)


def bleak_uuid(value: core.UUID) -> str:
    """A bumble UUID as bleak writes it: 128-bit, lower case, with dashes."""
    return str(uuid.UUID(bytes=bytes(value.to_bytes(force_128=True))[::-1]))


def _not_connected() -> BleakDBusError:
    return BleakDBusError(NOT_CONNECTED_ERROR[0], list(NOT_CONNECTED_ERROR[1]))


def _really_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _RequestGuard:
    """Serialises ATT requests on one connection and absorbs late responses (gaps F and H).

    Gap H: when a request's waiter is cancelled, bumble's ``send_request`` clears its pending
    request only once its task runs again; an answer arriving in between is handed to the
    cancelled future, whose ``set_result`` raises ``InvalidStateError`` inside the host's packet
    callback. Such an answer is the abandoned request's: it is dropped and counted as arrived.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._lock = asyncio.Lock()
        self._late: asyncio.Future[None] | None = None
        self._answered = False
        self._send_request = client.send_request
        self._on_gatt_pdu = client.on_gatt_pdu
        # Instance attributes shadow the methods: bumble calls them through the instance.
        client.send_request = self.send_request  # type: ignore[method-assign]
        client.on_gatt_pdu = self.on_gatt_pdu  # type: ignore[method-assign,assignment]

    async def send_request(self, request: att.ATT_PDU) -> Any:
        async with self._lock:
            late = self._late
            if late is not None:
                # Wait for the answer to the request a caller gave up on; it must not be taken
                # for this request's answer. If this wait is itself cancelled (this caller's own
                # timeout), the abandoned request is still outstanding: the next request waits
                # for it again.
                try:
                    await asyncio.wait_for(asyncio.shield(late), _ATT_TIMEOUT)
                except TimeoutError as exc:
                    self._late = None  # BlueZ gives up on the link's ATT channel too
                    raise core.TimeoutError(
                        "ATT response to an abandoned request never came"
                    ) from exc
                self._late = None
            self._answered = False
            try:
                return await self._send_request(request)
            except asyncio.CancelledError:
                if _really_cancelled() and not self._answered:
                    self._late = asyncio.get_running_loop().create_future()
                raise

    def on_gatt_pdu(self, pdu: att.ATT_PDU) -> None:
        pending = self._client.pending_response
        if pending is not None and pending.done() and pdu.op_code in att.ATT_RESPONSES:
            self._answered = True  # gap H: the abandoned request's answer
            return
        late = self._late
        if (
            late is not None
            and self._client.pending_request is None
            and pdu.op_code in att.ATT_RESPONSES
        ):
            if not late.done():
                late.set_result(None)
            return
        self._on_gatt_pdu(pdu)

    def link_lost(self) -> None:
        if self._late is not None and not self._late.done():
            self._late.set_result(None)


class SimClient(BaseBleakClient):
    """bleak client backend for a :class:`~wking_device.sim.SimWorld` (use ``world.backend``).

    Behaviour follows bleak's BlueZ backend where backends differ: the disconnected callback also
    fires after a local :meth:`disconnect`; ``services`` is reset on disconnection; notification
    and write-without-response requests BlueZ refuses are refused with its errors; errors carry
    BlueZ's strings.
    """

    _world: ClassVar[SimWorld]

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        services: set[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        bluez = kwargs.get("bluez") or {}
        # As bleak's BlueZ backend: the adapter to scan on when the client was made from an
        # address; a BLEDevice connects through the adapter that saw it.
        self._adapter_name: str | None = bluez.get("adapter")
        self._name: str | None = None
        self._details: SimDeviceDetails | None = None
        if isinstance(address_or_ble_device, BLEDevice):
            self._name = address_or_ble_device.name
            if isinstance(address_or_ble_device.details, SimDeviceDetails):
                self._details = address_or_ble_device.details
        # As bleak's BlueZ backend: None keeps every service, an empty set keeps none.
        self._wanted_services = None if services is None else set(services)
        self._use_bleak_cache = False
        # BlueZ's "Value" property: the last value read or notified on this connection.
        self._cached_values: dict[int, bytes] = {}
        self._connection: Connection | None = None
        self._attached_adapter: Any = None
        self._peer: Peer | None = None
        self._guard: _RequestGuard | None = None
        self._mtu = att.ATT_DEFAULT_MTU
        self._notifying: dict[int, Callable[[bytes], None]] = {}

    # --- properties -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The advertised name, or the address with dashes (as BlueZ does)."""
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        """The negotiated ATT MTU."""
        return self._mtu

    @property
    def is_connected(self) -> bool:
        """Whether the link is up."""
        return self._connection is not None

    # --- connection -------------------------------------------------------------------------

    async def _peer_address(self, scan_s: float) -> hci.Address:
        """The peer's bumble address; from an address string, scan for it first (as BlueZ does).

        Raises:
            BleakDeviceNotFoundError: Nothing with this address advertised within ``scan_s``.
        """
        world = self._world
        if self._details is None:
            # bleak's BlueZ backend: a client without a BLEDevice (an address string, or after
            # unpair()) runs BleakScanner.find_device_by_address with the connect timeout.
            scanner = world.backend.scanner
            assert scanner is not None  # a world's backend always has both classes
            device = await BleakScanner.find_device_by_address(
                self.address,
                timeout=scan_s,
                backend=scanner,
                bluez={"adapter": self._adapter_name} if self._adapter_name else {},
            )
            if device is None or not isinstance(device.details, SimDeviceDetails):
                raise BleakDeviceNotFoundError(
                    self.address, f"Device with address {self.address} was not found."
                )
            self._details = device.details
            self._name = self._name or device.name
        if self._details.world_id != id(world):
            raise BleakError(f"{self.address} was discovered in another simulated world")
        return self._details.address

    async def connect(self, pair: bool = False, **kwargs: Any) -> None:
        """Connect, exchange the MTU and discover services.

        A client made from an address string scans for the device first, for up to the timeout,
        then connects within a fresh timeout (as bleak's BlueZ backend does).

        Raises:
            TimeoutError: The speaker did not connect within the timeout (not connectable, out of
                range, or busy), as bleak's BlueZ backend raises.
            BleakDBusError: The attempt was aborted (``le-connection-abort-by-local``), or the
                world's adapter has no free connection slot
                (``le-connection-concurrent-connection-limit``).
            BleakDeviceNotFoundError: The client was made from an address string (or unpaired)
                and no device with that address advertised within the timeout.
        """
        del pair
        if self.is_connected:
            return
        timeout = float(kwargs.get("timeout", self._timeout))
        self._use_bleak_cache = bool(kwargs.get("dangerous_use_bleak_cache", False))
        self._world._check_running()
        peer_address = await self._peer_address(timeout)
        adapter = self._through()
        try:
            async with asyncio.timeout(timeout):
                await self._until_connectable(peer_address)
                async with adapter.connect_lock:
                    self._check_slots(adapter)
                    connection = await self._create_connection(adapter, peer_address)
                self._attached_adapter = adapter
                self._attach(connection)
                await self._discover()
        except BaseException:
            adapter.controller.cancel_pending_connection()
            if self._connection is not None:
                await self._drop_quietly()
            raise

    @property
    def adapter(self) -> str | None:
        """The world adapter this client connects (or is connected) through, once known."""
        return None if self._details is None else self._details.adapter

    def _through(self) -> Any:
        """The adapter that saw the device (BlueZ connects through the device's D-Bus path).

        Raises:
            BleakError: That adapter was unplugged: BlueZ removed the device object with it
                (bleak's manager: ``device 'dev_…' not found``).
        """
        assert self._details is not None
        adapter = self._world._adapter_or_none(self._details.adapter)
        if adapter is None:
            raise BleakError(f"device 'dev_{self.address.replace(':', '_')}' not found")
        return adapter

    async def _until_connectable(self, peer_address: hci.Address) -> None:
        """Wait until the target advertises connectably, without holding the adapter.

        The controller takes one connection request at a time, but a request for a device that
        is absent must not block the others: BlueZ keeps such devices on the controller's accept
        list and connects whichever advertises first. Only a target that advertises
        connectably goes to the controller.
        """
        link = self._world.link
        adapter = self._through()
        while True:
            if not adapter.present:
                raise BleakError(f"device 'dev_{self.address.replace(':', '_')}' not found")
            target = link.find_sim_controller(peer_address)
            if (
                target is not None
                and target.is_connectable_now()
                and target.rssi_seen_by(adapter.controller) is not None
            ):
                return
            await asyncio.sleep(_POLL_S)

    def _check_slots(self, adapter: Any) -> None:
        slots = adapter.connection_slots
        if slots is not None and len(adapter.device.connections) >= slots:
            raise BleakDBusError(CONNECTION_LIMIT_ERROR[0], list(CONNECTION_LIMIT_ERROR[1]))

    async def _create_connection(self, adapter: Any, peer_address: hci.Address) -> Connection:
        try:
            connection: Connection = await adapter.device.connect(peer_address, timeout=None)
        except core.ConnectionError as exc:
            if exc.error_code in _ABORT_STATUSES:
                raise BleakDBusError(ABORT_ERROR[0], list(ABORT_ERROR[1])) from exc
            if exc.error_code == hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR:
                raise TimeoutError(f"connecting to {self.address} was cancelled") from exc
            raise BleakError(f"failed to connect to {self.address}: {exc}") from exc
        return connection

    def _attach(self, connection: Connection) -> None:
        from bumble.device import Peer  # noqa: PLC0415 - bumble is imported with the world

        self._connection = connection
        self._peer = Peer(connection)
        self._guard = _RequestGuard(connection.gatt_client)
        connection.on("disconnection", self._on_disconnection)

    async def _discover(self) -> None:
        peer = self._peer
        assert peer is not None
        try:
            self._mtu = await peer.request_mtu(_REQUEST_MTU)
            # BlueZ resolves every service whatever services= says; bleak filters afterwards.
            await peer.discover_services()
            for service in peer.services:
                await service.discover_characteristics()
                for characteristic in service.characteristics:
                    await characteristic.discover_descriptors()
            await self._enable_service_changed(peer)
        except asyncio.CancelledError:
            if _really_cancelled():
                raise
            raise _not_connected() from None
        except (core.BaseBumbleError, att.ATT_Error) as exc:
            raise BleakError(f"service discovery on {self.address} failed: {exc}") from exc
        if self._connection is None:
            raise _not_connected()
        cache = _SERVICES_CACHE.setdefault(self._world, {})
        kept = cache.get(self.address) if self._use_bleak_cache else None
        services = self._build_services(peer, self._wanted_services if kept is None else kept)
        cache[self.address] = frozenset(service.uuid for service in services)
        self.services = services

    async def _enable_service_changed(self, peer: Peer) -> None:
        """Enable indications of the peer's Service Changed characteristic, as BlueZ does.

        BlueZ's GATT client (src/shared/gatt-client.c) registers for Service Changed while it
        initialises, before the services are reported resolved. BlueZ then re-discovers the
        changed range; here an indication is only logged (docs/testing.md lists the difference).
        """
        for service in peer.services:
            if bleak_uuid(service.uuid) != _GATT_SERVICE_UUID:
                continue
            for characteristic in service.characteristics:
                if bleak_uuid(characteristic.uuid) != _SERVICE_CHANGED_UUID:
                    continue
                if not characteristic.properties & Characteristic.Properties.INDICATE:
                    continue

                def on_service_changed(value: bytes) -> None:
                    _LOGGER.debug("%s: Service Changed %s", self.address, value.hex())

                try:
                    await peer.gatt_client.subscribe(
                        characteristic, on_service_changed, prefer_notify=False
                    )
                except att.ATT_Error as exc:
                    # BlueZ: "Failed to register handler for Service Changed", and carries on.
                    _LOGGER.debug(
                        "%s: Service Changed registration refused (ATT 0x%02X)",
                        self.address,
                        exc.error_code,
                    )

    def _build_services(
        self, peer: Peer, wanted: set[str] | frozenset[str] | None
    ) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        for service in peer.services:
            service_uuid = bleak_uuid(service.uuid)
            if service_uuid in _HIDDEN_SERVICES:
                continue
            if wanted is not None and service_uuid not in wanted:
                continue  # as bleak's BlueZ manager.get_services(requested_services)
            bleak_service = BleakGATTService(service, service.handle, service_uuid)
            collection.add_service(bleak_service)
            for characteristic in service.characteristics:
                flags = int(characteristic.properties)
                props = [name for flag, name in _PROPERTY_NAMES if flags & flag]
                bleak_char = BleakGATTCharacteristic(
                    characteristic,
                    characteristic.handle,
                    bleak_uuid(characteristic.uuid),
                    props,  # type: ignore[arg-type]
                    lambda: self._mtu - 3,
                    bleak_service,
                )
                collection.add_characteristic(bleak_char)
                for descriptor in characteristic.descriptors:
                    collection.add_descriptor(
                        BleakGATTDescriptor(
                            descriptor, descriptor.handle, bleak_uuid(descriptor.type), bleak_char
                        )
                    )
        return collection

    def _on_disconnection(self, reason: int) -> None:
        _LOGGER.debug("%s: disconnected (reason 0x%02X)", self.address, reason)
        self._connection = None
        self._peer = None
        if self._guard is not None:
            self._guard.link_lost()
            self._guard = None
        self._notifying.clear()
        self._cached_values.clear()
        self.services = None  # bleak's BlueZ backend resets them too
        callback = self._disconnected_callback
        if callback is not None:
            try:
                callback()
            except Exception:
                _LOGGER.exception("disconnected callback failed")

    async def _drop_quietly(self) -> None:
        connection = self._connection
        if connection is None:
            return
        adapter = self._attached_adapter
        if adapter is not None and not adapter.present:
            # The adapter was unplugged: the link is gone with it and nothing can be sent (BlueZ
            # removed the device object). Its disconnection event may still be on its way.
            connection.remove_listener("disconnection", self._on_disconnection)
            self._on_disconnection(CONNECTION_TIMEOUT)
            return
        try:
            await asyncio.wait_for(connection.disconnect(), _DISCONNECT_TIMEOUT)
        except (TimeoutError, core.BaseBumbleError, hci.HCI_Error):
            _LOGGER.debug("%s: disconnect did not complete", self.address)
        finally:
            if self._connection is connection:
                self._on_disconnection(hci.HCI_ErrorCode.CONNECTION_TERMINATED_BY_LOCAL_HOST_ERROR)

    async def disconnect(self) -> None:
        """Disconnect; the disconnected callback fires (as with BlueZ). A no-op when idle."""
        await self._drop_quietly()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        """Simulated speakers need no pairing; accepted and ignored."""
        del args, kwargs

    async def unpair(self) -> None:
        """Forget the device, as BlueZ's RemoveDevice does: a connection is closed first.

        The disconnected callback fires; the next :meth:`connect` scans for the device again.

        Raises:
            BleakDeviceNotFoundError: The world has no device with this address (BlueZ:
                ``org.bluez.Error.DoesNotExist``).
        """
        known = self._details is not None or self._world.speaker_or_none(self.address)
        self._details = None
        _SERVICES_CACHE.get(self._world, {}).pop(self.address, None)  # BlueZ removed it
        if self._connection is not None:
            await self._drop_quietly()
        elif not known:
            raise BleakDeviceNotFoundError(
                self.address, f"Device with address {self.address} was not found."
            )

    # --- I/O --------------------------------------------------------------------------------

    async def _gatt(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        if self._connection is None:
            raise _not_connected()
        try:
            return await operation()
        except asyncio.CancelledError:
            if _really_cancelled():
                raise
            # gap E: bumble cancels the pending request when the link drops
            raise _not_connected() from None
        except att.ATT_Error as exc:
            raise BleakGATTProtocolError(exc.error_code) from exc
        except core.TimeoutError as exc:
            raise TimeoutError(f"{self.address}: ATT request timed out") from exc
        except (core.BaseBumbleError, hci.HCI_Error) as exc:
            if self._connection is None:
                raise _not_connected() from exc
            raise BleakError(f"{self.address}: {exc}") from exc

    def _cached(self, kind: str, handle: int) -> bytearray:
        """The value BlueZ holds for an attribute (its D-Bus ``Value`` property)."""
        if self._connection is None:
            raise BleakError("Not connected")
        value = self._cached_values.get(handle)
        if value is None:
            # BlueZ exports no Value until one was read or notified; bleak's manager then fails.
            name = self._details.adapter if self._details is not None else "hci0"
            path = f"/org/bluez/{name}/dev_{self.address.replace(':', '_')}/{kind}{handle:04x}"
            raise BleakError(f"{kind} at {path} not found, device may be disconnected")
        return bytearray(value)

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a characteristic value from the device, or BlueZ's cached one.

        Args:
            characteristic: What to read.
            use_cached: Return the last value read or notified on this connection without
                asking the device (bleak's BlueZ backend reads the ``Value`` property).
            **kwargs: Ignored.

        Raises:
            BleakError: ``use_cached`` and no value was read or notified yet.
        """
        del kwargs
        if use_cached:
            return self._cached("characteristic", characteristic.handle)
        proxy = characteristic.obj
        value = bytes(await self._gatt(proxy.read_value))
        self._cached_values[characteristic.handle] = value
        return bytearray(value)

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        """Read a descriptor value from the device, or BlueZ's cached one (see read_gatt_char)."""
        del kwargs
        if use_cached:
            return self._cached("descriptor", descriptor.handle)
        proxy = descriptor.obj
        value = bytes(await self._gatt(proxy.read_value))
        self._cached_values[descriptor.handle] = value
        return bytearray(value)

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        """Write a characteristic value, with or without response.

        Raises:
            BleakGATTProtocolError: A write without response to a characteristic without that
                property (BlueZ: NotSupported, which bleak reports as REQUEST_NOT_SUPPORTED).
            BleakDBusError: A write without response longer than ``MTU - 3`` (BlueZ sends no
                PDU larger than the MTU: "Failed to initiate write").
        """
        proxy = characteristic.obj
        value = bytes(data)
        if not response:
            if "write-without-response" not in characteristic.properties:
                raise BleakGATTProtocolError(BleakGATTProtocolErrorCode.REQUEST_NOT_SUPPORTED)
            if self._connection is not None and len(value) > self._mtu - 3:
                raise BleakDBusError(WRITE_FAILED_ERROR[0], list(WRITE_FAILED_ERROR[1]))
        await self._gatt(lambda: proxy.write_value(value, with_response=response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        """Write a descriptor value."""
        proxy = descriptor.obj
        value = bytes(data)
        await self._gatt(lambda: proxy.write_value(value, with_response=True))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        """Subscribe to notifications, with BlueZ's refusals.

        Raises:
            BleakDBusError: The characteristic has neither notify nor indicate
                (``org.bluez.Error.NotSupported``), or it is notifying already
                (``org.bluez.Error.Failed: Already notifying``; as in bleak's BlueZ backend the
                new callback has replaced the old one all the same).
        """
        del kwargs
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        handle = characteristic.handle
        peer = self._peer
        if peer is None:
            raise _not_connected()
        if not {"notify", "indicate"} & set(characteristic.properties):
            raise BleakDBusError(NOT_SUPPORTED_ERROR[0], list(NOT_SUPPORTED_ERROR[1]))

        def on_value(value: bytes) -> None:
            self._cached_values[handle] = bytes(value)  # BlueZ stores notified values too
            callback(bytearray(value))

        previous = self._notifying.get(handle)
        if previous is not None:
            subscribers = peer.gatt_client.notification_subscribers.get(handle, set())
            subscribers.discard(previous)
            subscribers.add(on_value)
            self._notifying[handle] = on_value
            raise BleakDBusError(ALREADY_NOTIFYING_ERROR[0], list(ALREADY_NOTIFYING_ERROR[1]))
        await self._gatt(lambda: peer.gatt_client.subscribe(proxy, on_value))
        self._notifying[handle] = on_value

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        """Unsubscribe, with BlueZ's refusals.

        Raises:
            BleakError: ``Not connected`` (bleak's BlueZ backend checks first).
            BleakDBusError: The characteristic is not notifying
                (``org.bluez.Error.Failed: No notify session started``).
        """
        peer = self._peer
        if peer is None:
            raise BleakError("Not connected")
        handle = characteristic.handle
        subscriber = self._notifying.pop(handle, None)
        if subscriber is None:
            raise BleakDBusError(NO_NOTIFY_SESSION_ERROR[0], list(NO_NOTIFY_SESSION_ERROR[1]))
        proxy: CharacteristicProxy[bytes] = characteristic.obj
        await self._gatt(lambda: peer.gatt_client.unsubscribe(proxy, subscriber))
