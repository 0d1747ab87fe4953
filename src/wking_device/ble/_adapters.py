"""The host stack's own view of a speaker: connected elsewhere, and closing such stale links.

This module owns :func:`close_stale_connections`, our counterpart of bleak-retry-connector's
function of the same name: before a long-lived session connects, a speaker the Bluetooth stack
reports as connected — by another program, or by an earlier process of ours that died — is
disconnected, because a connected speaker stops advertising and every attempt to reach it would
time out. The stack is asked through bleak's adapter backend (``BleakAdapter``, bleak 3.1:
``get_connected_devices`` filtered on the profile's vendor service UUID); closing takes one of two
paths:

* BlueZ (a device whose ``details`` carry its D-Bus ``path``): ``org.bluez.Device1.Disconnect``
  over the system bus, as bleak-retry-connector does (:func:`_bluez_disconnect`, the only code
  here that needs real BlueZ; it is not run by the test suite);
* an adapter backend that offers ``disconnect_device(device)`` (the simulator's): that.

Where the platform has no adapter backend (macOS and Windows have none that lists connected
devices here) or the stack cannot be asked (no BlueZ, no D-Bus), nothing is closed and the
session connects as before.

It also owns the per-adapter slot view, :func:`adapter_slots` (:class:`AdapterSlots`): every
device connected on an adapter, whoever connected it, and the controller's limit where the stack
knows it — what habluetooth's ``BleakSlotManager`` counts. On BlueZ it is read from BlueZ's
object manager (``org.freedesktop.DBus.ObjectManager.GetManagedObjects`` on ``org.bluez``, the
``Connected`` and ``Adapter`` properties of every ``org.bluez.Device1``; BlueZ does not expose
the controller's limit, so the configured ``max_connections`` stands for it), through
:func:`bluez_connected_by_adapter`; an adapter backend that offers ``connection_state()`` (the
simulator's) is asked instead. :func:`pick_adapter` chooses among several adapters the way
habluetooth does. It does not hold slots (:mod:`wking_device.ble._limiter` does).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bleak.backends.adapter import BaseBleakAdapter, get_platform_adapter_backend_type

# Imported at run time (this package loads it anyway) so that
# typing.get_type_hints resolves the public annotations that name them.
from bleak.backends.device import BLEDevice  # noqa: TC002

from wking_device.ble._backend import BleBackend
from wking_device.protocol import WKING_V1, DeviceProfile

__all__ = [
    "AdapterCandidate",
    "AdapterSlots",
    "adapter_slots",
    "bluez_connected_by_adapter",
    "close_stale_connections",
    "connected_in_stack",
    "device_adapter",
    "pick_adapter",
]

_LOGGER = logging.getLogger(__name__)

_PLAIN_ADAPTER = re.compile(r"[A-Za-z0-9_]{1,64}")


def is_plain_adapter_name(name: str) -> bool:
    """Whether ``name`` can be handed to the stack: one D-Bus object path element (``hci1``).

    Anything else (``../hci0``, control characters) never reaches bleak, whose errors would
    repeat it.
    """
    return _PLAIN_ADAPTER.fullmatch(name) is not None


_DISCONNECT_TIMEOUT = 5.0
"""Seconds a forced disconnection may take (bleak-retry-connector allows the same order)."""


async def _stack_adapter(backend: BleBackend | None, adapter: str | None) -> BaseBleakAdapter:
    cls: type[BaseBleakAdapter] | None = backend.adapter if backend is not None else None
    if cls is None:
        if backend is not None and not backend.is_default:
            raise NotImplementedError("this backend has no adapter backend")
        cls, _ = get_platform_adapter_backend_type()
    bluez: dict[str, Any] = {"adapter": adapter} if adapter else {}
    return await cls.get(bluez=bluez)


async def connected_in_stack(
    *,
    backend: BleBackend | None = None,
    adapter: str | None = None,
    profile: DeviceProfile = WKING_V1,
) -> list[BLEDevice]:
    """The speakers the Bluetooth stack has connected on ``adapter``, whoever connected them.

    Returns:
        Their ``BLEDevice`` objects; empty when the platform or stack cannot tell.
    """
    try:
        stack = await _stack_adapter(backend, adapter)
        return await stack.get_connected_devices(frozenset({profile.service_uuid.lower()}))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - no adapter backend, no BlueZ, no D-Bus: nothing known
        _LOGGER.debug("the stack's connected devices are unknown here: %r", exc)
        return []


async def close_stale_connections(
    address: str,
    *,
    backend: BleBackend | None = None,
    adapter: str | None = None,
    profile: DeviceProfile = WKING_V1,
) -> int:
    """Disconnect ``address`` wherever the stack holds it connected (call before connecting).

    Args:
        address: The speaker's address (case-insensitive).
        backend: The bleak backend (with its adapter backend); ``None`` for the platform's.
        adapter: The adapter (e.g. ``hci0``); ``None`` for the default one.
        profile: Its vendor service UUID selects the devices the stack is asked about.

    Returns:
        How many stale connections were closed (0 when there were none, or the platform cannot
        tell or close them).
    """
    wanted = address.upper()
    stale = [
        device
        for device in await connected_in_stack(backend=backend, adapter=adapter, profile=profile)
        if device.address.upper() == wanted
    ]
    closed = 0
    for device in stale:
        try:
            async with asyncio.timeout(_DISCONNECT_TIMEOUT):
                if await _disconnect(device, backend=backend, adapter=adapter):
                    closed += 1
                    _LOGGER.info("closed a stale connection to %s", device.address)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the connect that follows reports what matters
            _LOGGER.debug("closing a stale connection to %s failed: %r", device.address, exc)
    return closed


async def _disconnect(
    device: BLEDevice, *, backend: BleBackend | None, adapter: str | None
) -> bool:
    details: Any = device.details
    if isinstance(details, dict) and isinstance(details.get("path"), str):
        await _bluez_disconnect(details["path"])
        return True
    stack = await _stack_adapter(backend, adapter)
    disconnect = getattr(stack, "disconnect_device", None)
    if callable(disconnect):
        await disconnect(device)
        return True
    return False


async def _bluez_disconnect(path: str) -> None:  # pragma: no cover - needs BlueZ on D-Bus
    """``org.bluez.Device1.Disconnect`` on ``path`` over the system bus (real BlueZ only)."""
    from dbus_fast import BusType, Message, MessageType  # noqa: PLC0415 - Linux only
    from dbus_fast.aio import MessageBus  # noqa: PLC0415

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path=path,
                interface="org.bluez.Device1",
                member="Disconnect",
            )
        )
        if reply is not None and reply.message_type is MessageType.ERROR:
            raise OSError(f"BlueZ refused to disconnect: {reply.error_name} {reply.body!r}")
    finally:
        bus.disconnect()


# --- slots ----------------------------------------------------------------------------------------

_BLUEZ_ADAPTER = "org.bluez.Adapter1"
_BLUEZ_DEVICE = "org.bluez.Device1"
_BLUEZ_ASK_S = 2.0
"""Seconds BlueZ's object manager may take to list its objects before slots count as unknown."""
_BLUEZ_RETRY_S = 60.0
"""After BlueZ could not be asked (no system bus, no BlueZ), seconds before asking again."""
_bluez_unavailable_until = 0.0


@dataclass(frozen=True, slots=True)
class AdapterSlots:
    """An adapter's connections as its Bluetooth stack reports them.

    Attributes:
        adapter: The adapter's name (``hci0``), or ``None`` for the default one.
        present: Whether the stack has the adapter (an unplugged one has no free slot).
        limit: The controller's connection limit where the stack knows it (the simulator), else
            ``None`` (BlueZ does not expose it: the configured ``max_connections`` stands in).
        connected: Upper-case addresses of every device connected on it, whoever connected it.
    """

    adapter: str | None
    present: bool
    limit: int | None
    connected: frozenset[str]

    def free(self, configured: int) -> int:
        """Free slots: the limit (the lower of ``configured`` and the stack's) minus connected."""
        if not self.present:
            return 0
        limit = configured if self.limit is None else min(configured, self.limit)
        return max(0, limit - len(self.connected))


def _plain(value: Any) -> Any:
    """A D-Bus value without its ``Variant`` wrapper (dbus-fast keeps ``.value``)."""
    return getattr(value, "value", value)


def bluez_connected_by_adapter(
    objects: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> dict[str, frozenset[str]]:
    """Every adapter BlueZ has and the addresses connected on it (from its object manager).

    Args:
        objects: What ``org.freedesktop.DBus.ObjectManager.GetManagedObjects`` on ``org.bluez``
            returns: object path -> interface -> property -> value (plain or ``Variant``).

    Returns:
        Adapter name (``hci0``) -> upper-case addresses of its connected devices (empty set for
        an adapter with none); a device of an adapter not listed is counted under its adapter
        all the same.
    """
    result: dict[str, set[str]] = {}
    for path, interfaces in objects.items():
        if _BLUEZ_ADAPTER in interfaces:
            result.setdefault(path.rsplit("/", 1)[-1], set())
    for path, interfaces in objects.items():
        device = interfaces.get(_BLUEZ_DEVICE)
        if device is None or not _plain(device.get("Connected", False)):
            continue
        adapter_path = _plain(device.get("Adapter")) or path.rsplit("/", 1)[0]
        address = _plain(device.get("Address"))
        if not isinstance(adapter_path, str) or not isinstance(address, str):
            continue
        result.setdefault(adapter_path.rsplit("/", 1)[-1], set()).add(address.upper())
    return {name: frozenset(addresses) for name, addresses in result.items()}


async def adapter_slots(
    *, backend: BleBackend | None = None, adapter: str | None = None
) -> AdapterSlots | None:
    """How many devices ``adapter`` has connected now, whoever connected them.

    Args:
        backend: The bleak backend (with its adapter backend); ``None`` for the platform's.
        adapter: The adapter (``hci0``); ``None`` for the default one.

    Returns:
        The adapter's connections; ``None`` when the platform or stack cannot tell (no adapter
        backend that reports them, not BlueZ, no D-Bus).
    """
    try:
        if backend is not None and not backend.is_default:
            if backend.adapter is None:
                return None
            stack = await backend.adapter.get(bluez={"adapter": adapter} if adapter else {})
            state = getattr(stack, "connection_state", None)
            if not callable(state):
                return None
            found = await state()
            if found is None:
                return AdapterSlots(adapter, present=False, limit=0, connected=frozenset())
            limit, connected = found
            return AdapterSlots(
                adapter,
                present=True,
                limit=limit,
                connected=frozenset(a.upper() for a in connected),
            )
        return await _bluez_slots(adapter)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - unknown here: the configured limit alone applies
        _LOGGER.debug("the adapter's connections are unknown here: %r", exc)
        return None


async def _bluez_slots(adapter: str | None) -> AdapterSlots | None:
    global _bluez_unavailable_until  # noqa: PLW0603 - one process-wide "do not ask again yet"
    if sys.platform != "linux" or time.monotonic() < _bluez_unavailable_until:
        return None
    try:
        async with asyncio.timeout(_BLUEZ_ASK_S):  # a bus that never answers: not waited on
            objects = await _bluez_managed_objects()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - no system bus or no BlueZ: not asked for a while
        _bluez_unavailable_until = time.monotonic() + _BLUEZ_RETRY_S
        _LOGGER.debug("BlueZ cannot be asked for its connections: %r", exc)
        return None
    by_adapter = bluez_connected_by_adapter(objects)
    # No adapter named: the lowest hciN stands for BlueZ's default (its first powered adapter
    # with the central role, which the object tree alone does not single out).
    name = adapter or (min(by_adapter) if by_adapter else None)
    if name is None or name not in by_adapter:
        return AdapterSlots(adapter, present=False, limit=None, connected=frozenset())
    return AdapterSlots(adapter, present=True, limit=None, connected=by_adapter[name])


async def _bluez_managed_objects() -> dict[str, Any]:  # pragma: no cover - needs BlueZ
    """``GetManagedObjects`` of ``org.bluez`` over the system bus (real BlueZ only)."""
    from dbus_fast import BusType, Message, MessageType  # noqa: PLC0415 - Linux only
    from dbus_fast.aio import MessageBus  # noqa: PLC0415

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path="/",
                interface="org.freedesktop.DBus.ObjectManager",
                member="GetManagedObjects",
            )
        )
        if reply is None or reply.message_type is MessageType.ERROR:
            raise OSError(f"BlueZ did not list its objects: {reply!r}")
        objects: dict[str, Any] = reply.body[0]
        return objects
    finally:
        bus.disconnect()


# --- choosing an adapter --------------------------------------------------------------------------


def device_adapter(device: BLEDevice) -> str | None:
    """The adapter that saw ``device`` (BlueZ: from its D-Bus path), where the backend tells."""
    details: Any = device.details
    if isinstance(details, dict):
        path = details.get("path")
        if isinstance(path, str) and path.startswith("/org/bluez/"):
            return path.split("/")[3]
        return None
    name = getattr(details, "adapter", None)
    return name if isinstance(name, str) else None


@dataclass(frozen=True, slots=True)
class AdapterCandidate:
    """One adapter that saw a speaker, for :func:`pick_adapter`.

    Attributes:
        adapter: Its name.
        rssi: The speaker's RSSI as this adapter sees it (dBm).
        free: Its free connection slots.
        connections: Devices connected on it now.
    """

    adapter: str
    rssi: int
    free: int
    connections: int


def pick_adapter(candidates: Iterable[AdapterCandidate]) -> AdapterCandidate | None:
    """The adapter to connect through: a free slot, then the best RSSI, then fewer connections.

    habluetooth's rule for a device several adapters see. The name breaks a remaining tie, so
    the choice is the same every time.

    Returns:
        The chosen candidate; ``None`` when none has a free slot.
    """
    free = [c for c in candidates if c.free > 0]
    if not free:
        return None
    return min(free, key=lambda c: (-c.rssi, c.connections, c.adapter))
