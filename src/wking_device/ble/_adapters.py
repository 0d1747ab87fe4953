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
session connects as before. It does not count slots or choose adapters.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from bleak.backends.adapter import get_platform_adapter_backend_type

from wking_device.protocol import WKING_V1

if TYPE_CHECKING:
    from bleak.backends.adapter import BaseBleakAdapter
    from bleak.backends.device import BLEDevice

    from wking_device.ble._backend import BleBackend
    from wking_device.protocol import DeviceProfile

__all__ = ["close_stale_connections", "connected_in_stack"]

_LOGGER = logging.getLogger(__name__)

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
