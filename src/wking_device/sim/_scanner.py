"""The bleak scanner backend over the simulated world's adapter.

This module owns :class:`SimScanner` (a ``BaseBleakScanner``) and the conversion of bumble
advertisements into bleak's ``AdvertisementData``. It does not match W-KING speakers (the
profile does, in the BLE layer); it reports every advertiser on the link, as a real adapter does.
Per-world subclasses are made by :class:`wking_device.sim.SimWorld` with ``type()``, because
bleak reads the backend's ``__name__`` and a ``functools.partial`` has none.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

# Imported at run time (this package loads it anyway) so that
# typing.get_type_hints resolves the public annotations that name them.
from bumble import hci  # noqa: TC002
from bumble.device import Advertisement  # noqa: TC002

if TYPE_CHECKING:
    from wking_device.sim._world import SimWorld

__all__ = ["SimDeviceDetails", "SimScanner", "address_string", "parse_ad_structures"]

_LOGGER = logging.getLogger(__name__)

_BASE = "-0000-1000-8000-00805f9b34fb"
_UUID16 = (0x02, 0x03)
_UUID32 = (0x04, 0x05)
_UUID128 = (0x06, 0x07)
_NAME_SHORT, _NAME_COMPLETE = 0x08, 0x09
_TX_POWER = 0x0A
_SVC_DATA16, _SVC_DATA32, _SVC_DATA128 = 0x16, 0x20, 0x21
_MANUFACTURER = 0xFF


@dataclass(frozen=True, slots=True)
class SimDeviceDetails:
    """``BLEDevice.details`` of a simulated speaker.

    bleak's address string loses the address type, which bumble's address equality includes;
    the bumble address is kept here so the client connects to exactly what was seen.

    Attributes:
        address: The bumble ``Address`` (random static).
        world_id: ``id()`` of the world that saw it (a device from another world is refused).
        adapter: The world adapter that saw it; a client connects through it (as BlueZ
            connects through the adapter in the device's D-Bus path).
    """

    address: hci.Address
    world_id: int
    adapter: str = "hci0"


def address_string(address: hci.Address) -> str:
    """Bleak's form of a bumble address: upper-case, colon-separated, no ``/P`` suffix."""
    return ":".join(f"{b:02X}" for b in reversed(bytes(address.address_bytes)))


def _uuid16(value: int) -> str:
    return f"0000{value:04x}{_BASE}"


def _uuid32(value: int) -> str:
    return f"{value:08x}{_BASE}"


def parse_ad_structures(
    structures: Sequence[tuple[int, bytes]],
) -> tuple[str | None, dict[int, bytes], dict[str, bytes], list[str], int | None]:
    """Parse raw AD structures the way bleak's BlueZ backend reports them.

    TX power is a signed byte (bumble 0.0.236 decodes it unsigned: -8 becomes 248).

    Returns:
        ``(local_name, manufacturer_data, service_data, service_uuids, tx_power)``.
    """
    name: str | None = None
    manufacturer: dict[int, bytes] = {}
    service_data: dict[str, bytes] = {}
    uuids: list[str] = []
    tx_power: int | None = None
    for ad_type, raw in structures:
        data = bytes(raw)
        kind = int(ad_type)
        if kind in (_NAME_COMPLETE, _NAME_SHORT):
            if kind == _NAME_COMPLETE or name is None:
                name = data.decode("utf-8", errors="replace")
        elif kind == _MANUFACTURER and len(data) >= 2:
            manufacturer[int.from_bytes(data[:2], "little")] = data[2:]
        elif kind in _UUID16:
            uuids += [
                _uuid16(int.from_bytes(data[i : i + 2], "little"))
                for i in range(0, len(data) - 1, 2)
            ]
        elif kind in _UUID32:
            uuids += [
                _uuid32(int.from_bytes(data[i : i + 4], "little"))
                for i in range(0, len(data) - 3, 4)
            ]
        elif kind in _UUID128:
            uuids += [
                str(uuid.UUID(bytes=data[i : i + 16][::-1])) for i in range(0, len(data) - 15, 16)
            ]
        elif kind == _TX_POWER and len(data) == 1:
            tx_power = int.from_bytes(data, "little", signed=True)
        elif kind == _SVC_DATA16 and len(data) >= 2:
            service_data[_uuid16(int.from_bytes(data[:2], "little"))] = data[2:]
        elif kind == _SVC_DATA32 and len(data) >= 4:
            service_data[_uuid32(int.from_bytes(data[:4], "little"))] = data[4:]
        elif kind == _SVC_DATA128 and len(data) >= 16:
            service_data[str(uuid.UUID(bytes=data[:16][::-1]))] = data[16:]
    return name, manufacturer, service_data, uuids, tx_power


class SimScanner(BaseBleakScanner):
    """bleak scanner backend for a :class:`~wking_device.sim.SimWorld` (use ``world.backend``).

    ``bluez={"adapter": "hci1"}`` selects the world's adapter (default: the first present); as
    on BlueZ, :meth:`start` raises ``BleakError("adapter 'hci1' not found")`` when the world has
    no such adapter plugged in. Several scanners may run at once; an adapter scans while at least
    one of its scanners does (as BlueZ shares one discovery session), actively unless every
    scanner asked for passive. Each advertisement carries the RSSI the adapter sees.
    A passive scan gets no scan responses, hence no names; as on BlueZ it needs
    ``bluez={"or_patterns": [...]}`` (``BleakError`` at construction without them) and reports
    only advertisements a pattern matches.
    """

    _world: ClassVar[SimWorld]

    def __init__(
        self,
        detection_callback: Any,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self.scanning_mode = scanning_mode
        self._running = False
        bluez = kwargs.get("bluez") or {}
        self._adapter_name: str | None = bluez.get("adapter")
        self._adapter: Any = None
        self._or_patterns = [
            (int(start), int(ad_type), bytes(content))
            for start, ad_type, content in bluez.get("or_patterns") or ()
        ]
        if scanning_mode == "passive" and not self._or_patterns:
            # bleak's BlueZ backend refuses this in its constructor: BlueZ scans passively only
            # through an advertisement monitor, which needs at least one pattern.
            raise BleakError("passive scanning mode requires bluez or_patterns")

    @property
    def passive(self) -> bool:
        """Whether this scanner asked for a passive scan."""
        return self.scanning_mode == "passive"

    async def start(self) -> None:
        """Start scanning (clears what was seen before)."""
        self.seen_devices = {}
        if self._running:
            return
        adapter = self._world._running_adapter(self._adapter_name)
        self._running = True
        self._adapter = adapter
        await adapter.add_scanner(self)

    async def stop(self) -> None:
        """Stop scanning."""
        if not self._running:
            return
        self._running = False
        adapter, self._adapter = self._adapter, None
        if adapter is not None and not self._world._closed:
            await adapter.remove_scanner(self)

    def _matches_or_patterns(self, structures: Sequence[tuple[int, bytes]]) -> bool:
        """Whether an AD structure matches a pattern, as BlueZ's advertisement monitor checks.

        A pattern ``(start, ad_type, content)`` matches an AD structure of that type whose data
        holds ``content`` at offset ``start``.
        """
        for ad_type, raw in structures:
            data = bytes(raw)
            for start, wanted_type, content in self._or_patterns:
                if int(ad_type) == wanted_type and data[start : start + len(content)] == content:
                    return True
        return False

    def on_advertisement(self, advertisement: Advertisement) -> None:
        """Report one (merged advertising + scan response) advertisement to bleak."""
        structures = advertisement.data.ad_structures
        if self.passive and not self._matches_or_patterns(structures):
            return  # BlueZ's advertisement monitor reports only what a pattern matches
        name, manufacturer, service_data, uuids, tx_power = parse_ad_structures(structures)
        if not self.is_allowed_uuid(uuids):
            return
        address = address_string(advertisement.address)
        previous = self.seen_devices.get(address)
        if name is None and previous is not None:
            # BlueZ keeps a device's name once known; a passive report has none.
            name = previous[0].name
        adv = AdvertisementData(
            local_name=name,
            manufacturer_data=manufacturer,
            service_data=service_data,
            service_uuids=uuids,
            tx_power=tx_power,
            rssi=advertisement.rssi,
            platform_data=(advertisement,),
        )
        adapter = self._adapter
        details = SimDeviceDetails(
            advertisement.address, id(self._world), adapter.name if adapter else "hci0"
        )
        device = self.create_or_update_device(address, address, name, details, adv)
        self.call_detection_callbacks(device, adv)
