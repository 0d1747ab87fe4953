"""Device profiles: how to recognise a speaker, which models exist, which GATT layout it uses.

This module owns the pluggable :class:`DeviceProfile` protocol, the built-in ``wking-v1`` profile
(:data:`WKING_V1`), the :data:`MODELS` table, and the advertisement layout (manufacturer data
payload, advertising data and scan response bytes within the 31-byte legacy limit). It does not
scan or connect (the BLE layer does) and does not advertise (the simulator does).

The real W-KING vendor identifiers are unpublished. The manufacturer data therefore uses company
id 0xFFFF, which the Bluetooth SIG reserves for testing / "no company", and the vendor service
UUID is this project's own. See docs/protocol.md.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol, runtime_checkable

from wking_device.errors import AdvertisementError, UsageError
from wking_device.protocol._codec import DEFAULT_MTU, FrameCodec
from wking_device.protocol._state import Role
from wking_device.protocol._uuids import (
    WKING_COMMAND_CHAR_UUID,
    WKING_NOTIFY_CHAR_UUID,
    WKING_SERVICE_UUID,
)

__all__ = [
    "COMPANY_ID_TESTING",
    "LEGACY_ADV_MAX",
    "MANUFACTURER_MAGIC",
    "MODELS",
    "NAME_PREFIX",
    "UNKNOWN_MODEL",
    "WKING_V1",
    "AdvertisementFields",
    "AdvertisementFlags",
    "DeviceProfile",
    "ManufacturerData",
    "ModelInfo",
    "WkingV1Profile",
    "build_advertising_data",
    "build_manufacturer_data",
    "build_scan_response",
    "model_by_code",
    "model_from_name",
    "parse_advertising_data",
    "parse_manufacturer_data",
]

_LOGGER = logging.getLogger(__name__)

#: Bluetooth SIG company identifier 0xFFFF: "for testing / no company". The real vendor's id is
#: unpublished; see docs/protocol.md.
COMPANY_ID_TESTING: Final = 0xFFFF
#: First two bytes of the manufacturer data payload.
MANUFACTURER_MAGIC: Final = b"WK"
_MANUFACTURER_SIZE: Final = 4
#: Advertised names start with this (compared case-insensitively).
NAME_PREFIX: Final = "W-KING"
#: Model id :meth:`DeviceProfile.match` returns for a W-KING speaker whose model is not known.
UNKNOWN_MODEL: Final = "unknown"
#: Legacy advertising PDUs carry at most 31 bytes of advertising data (and of scan response).
LEGACY_ADV_MAX: Final = 31

# AD types (Bluetooth Assigned Numbers, "Common Data Types").
_AD_FLAGS: Final = 0x01
_AD_UUID128_INCOMPLETE: Final = 0x06
_AD_UUID128_COMPLETE: Final = 0x07
_AD_NAME_SHORT: Final = 0x08
_AD_NAME_COMPLETE: Final = 0x09
_AD_MANUFACTURER: Final = 0xFF
#: LE General Discoverable Mode | BR/EDR Not Supported.
_FLAGS_LE_GENERAL_NO_BREDR: Final = 0x06


class AdvertisementFlags(enum.IntFlag):
    """Bits of manufacturer data byte 3; unknown bits are reserved and ignored."""

    NONE = 0
    PAIRING = 0x01
    CHARGING = 0x02
    LOW_BATTERY = 0x04


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    """One speaker model.

    Attributes:
        id: Stable model id used in records and the CLI, e.g. ``"x10"``.
        name: Display and advertised name, e.g. ``"W-KING X10"``.
        code: Model code in manufacturer data and :class:`InfoResult`.
        battery_mah: Battery capacity (simulator default and display).
        output_w: Rated output power in watts.
        has_lights: Whether the model has a light show (others answer SET_LIGHT with UNSUPPORTED).
        firmware_version: Firmware the simulator reports by default.
        hardware_version: Hardware revision the simulator reports by default.
    """

    id: str
    name: str
    code: int
    battery_mah: int
    output_w: int
    has_lights: bool = True
    firmware_version: str = "1.0.0"
    hardware_version: str = "A"


_MODEL_LIST: Final = (
    ModelInfo(
        id="d8-mini",
        name="W-KING D8 Mini",
        code=0x01,
        battery_mah=1500,
        output_w=10,
        has_lights=False,
        firmware_version="1.3.2",
        hardware_version="A",
    ),
    ModelInfo(
        id="x10",
        name="W-KING X10",
        code=0x02,
        battery_mah=5000,
        output_w=60,
        firmware_version="2.1.0",
        hardware_version="C",
    ),
    ModelInfo(
        id="t9-pro",
        name="W-KING T9 Pro",
        code=0x03,
        battery_mah=8000,
        output_w=80,
        firmware_version="3.0.4",
        hardware_version="B",
    ),
)

#: Known models by id.
MODELS: Final[Mapping[str, ModelInfo]] = MappingProxyType({m.id: m for m in _MODEL_LIST})
_BY_CODE: Final[Mapping[int, ModelInfo]] = MappingProxyType({m.code: m for m in _MODEL_LIST})


def model_by_code(code: int) -> ModelInfo | None:
    """The model with this code, or ``None``."""
    return _BY_CODE.get(code)


def model_from_name(
    name: str | None, models: Iterable[ModelInfo] = _MODEL_LIST
) -> ModelInfo | None:
    """The model whose display name the advertised ``name`` starts with (case-insensitive).

    Args:
        name: The advertised name.
        models: Candidates (default: :data:`MODELS`); the longest matching name wins, so
            ``"W-KING T9 Pro"`` beats a shorter name it starts with.
    """
    if not isinstance(name, str):
        return None
    folded = name.casefold()
    for model in sorted(models, key=lambda m: len(m.name), reverse=True):
        if folded.startswith(model.name.casefold()):
            return model
    return None


# --- manufacturer data ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ManufacturerData:
    """A parsed ``wking-v1`` manufacturer data payload.

    Attributes:
        model_code: The model code byte.
        model: The known model with that code, or ``None`` for a model this library does not know.
        flags: Status flags (unknown bits kept as they are).
    """

    model_code: int
    model: ModelInfo | None
    flags: AdvertisementFlags


def parse_manufacturer_data(payload: bytes | bytearray) -> ManufacturerData:
    """Strictly parse the payload under :data:`COMPANY_ID_TESTING` (as bleak reports it).

    Layout: ``b"WK" | model code (1) | flags (1)`` - exactly 4 bytes.

    Args:
        payload: The manufacturer data value, without the 2-byte company id.

    Returns:
        The parsed data; an unknown model code gives ``model=None`` (a newer model), not an error.

    Raises:
        AdvertisementError: Wrong length or magic.
    """
    if not isinstance(payload, bytes | bytearray):
        raise AdvertisementError(f"manufacturer data must be bytes, got {type(payload).__name__}")
    if len(payload) != _MANUFACTURER_SIZE:
        raise AdvertisementError(
            f"W-KING manufacturer data must be {_MANUFACTURER_SIZE} bytes, got {len(payload)}"
        )
    if bytes(payload[:2]) != MANUFACTURER_MAGIC:
        raise AdvertisementError(f"manufacturer data does not start with {MANUFACTURER_MAGIC!r}")
    code = payload[2]
    return ManufacturerData(
        model_code=code, model=model_by_code(code), flags=AdvertisementFlags(payload[3])
    )


def build_manufacturer_data(
    model: ModelInfo | str, flags: AdvertisementFlags = AdvertisementFlags.NONE
) -> bytes:
    """The manufacturer data payload (without company id) a speaker of ``model`` advertises.

    Args:
        model: A :class:`ModelInfo` or a model id from :data:`MODELS`.
        flags: Status flags.

    Raises:
        UsageError: Unknown model id.
    """
    info = _model(model)
    return MANUFACTURER_MAGIC + bytes((info.code, int(flags) & 0xFF))


def _model(model: ModelInfo | str) -> ModelInfo:
    if isinstance(model, ModelInfo):
        return model
    try:
        return MODELS[model]
    except KeyError:
        raise UsageError(f"unknown model {model!r}; known: {', '.join(MODELS)}") from None


# --- raw advertising data -------------------------------------------------------------------------


def _ad(ad_type: int, data: bytes) -> bytes:
    return bytes((len(data) + 1, ad_type)) + data


def build_advertising_data(
    model: ModelInfo | str,
    *,
    flags: AdvertisementFlags = AdvertisementFlags.NONE,
    include_service_uuid: bool = True,
    include_manufacturer_data: bool = True,
) -> bytes:
    """Raw advertising data (AD structures) for a ``wking-v1`` speaker.

    Flags (3 bytes) + complete list of 128-bit service UUIDs (18) + manufacturer data (8) = 29
    bytes, within the 31-byte legacy limit. The name goes in the scan response
    (:func:`build_scan_response`), so a passive scan sees no name.

    Args:
        model: The model (object or id).
        flags: Manufacturer-data status flags.
        include_service_uuid: Advertise the vendor service UUID.
        include_manufacturer_data: Advertise the manufacturer data.

    Raises:
        UsageError: Unknown model id.
    """
    info = _model(model)
    out = _ad(_AD_FLAGS, bytes((_FLAGS_LE_GENERAL_NO_BREDR,)))
    if include_service_uuid:
        out += _ad(_AD_UUID128_COMPLETE, uuid.UUID(WKING_SERVICE_UUID).bytes[::-1])
    if include_manufacturer_data:
        company = COMPANY_ID_TESTING.to_bytes(2, "little")
        out += _ad(_AD_MANUFACTURER, company + build_manufacturer_data(info, flags))
    assert len(out) <= LEGACY_ADV_MAX  # fixed sizes above: 29 bytes at most
    return out


def build_scan_response(name: str) -> bytes:
    """Raw scan response data carrying the complete local name.

    Args:
        name: The advertised name, at most 29 UTF-8 bytes.

    Raises:
        UsageError: The name does not fit.
    """
    raw = name.encode("utf-8")
    if len(raw) > LEGACY_ADV_MAX - 2:
        raise UsageError(f"name {name!r} is {len(raw)} bytes; at most {LEGACY_ADV_MAX - 2} fit")
    return _ad(_AD_NAME_COMPLETE, raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdvertisementFields:
    """The fields of raw AD structures that profiles match on (as bleak would report them).

    Attributes:
        name: Local name (complete or shortened), if present.
        service_uuids: 128-bit service UUIDs as lowercase strings.
        manufacturer_data: Company id -> payload.
    """

    name: str | None = None
    service_uuids: tuple[str, ...] = ()
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)


def parse_advertising_data(*chunks: bytes) -> AdvertisementFields:
    """Parse raw AD structures (advertising data and scan response) into matchable fields.

    Args:
        *chunks: Advertising data and/or scan response bytes.

    Returns:
        Name, 128-bit service UUIDs and manufacturer data; other AD types are skipped.

    Raises:
        AdvertisementError: An AD structure runs past the end, or a field is malformed.
    """
    name: str | None = None
    uuids: list[str] = []
    mfr: dict[int, bytes] = {}
    for chunk in chunks:
        data = bytes(chunk)
        pos = 0
        while pos < len(data):
            size = data[pos]
            if size == 0:  # early terminator / zero padding (Core Vol 3, Part C, 11)
                break
            end = pos + 1 + size
            if end > len(data):
                raise AdvertisementError(f"AD structure at offset {pos} runs past the end")
            ad_type, value = data[pos + 1], data[pos + 2 : end]
            if ad_type in (_AD_NAME_COMPLETE, _AD_NAME_SHORT):
                try:
                    name = value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise AdvertisementError("local name is not valid UTF-8") from exc
            elif ad_type in (_AD_UUID128_COMPLETE, _AD_UUID128_INCOMPLETE):
                if len(value) % 16:
                    raise AdvertisementError("128-bit UUID list length is not a multiple of 16")
                uuids.extend(
                    str(uuid.UUID(bytes=value[i : i + 16][::-1])) for i in range(0, len(value), 16)
                )
            elif ad_type == _AD_MANUFACTURER:
                if len(value) < 2:
                    raise AdvertisementError("manufacturer data shorter than its company id")
                mfr[int.from_bytes(value[:2], "little")] = value[2:]
            pos = end
    return AdvertisementFields(
        name=name, service_uuids=tuple(uuids), manufacturer_data=MappingProxyType(mfr)
    )


# --- profiles -------------------------------------------------------------------------------------


@runtime_checkable
class DeviceProfile(Protocol):
    """What the BLE layer and the simulator need from a speaker profile.

    A profile names its GATT layout, its models, recognises its speakers' advertisements and
    makes codecs for its vendor channel. Implement this protocol (a frozen dataclass is enough)
    to support another speaker family; see docs/protocol.md, "Adding a profile".
    """

    @property
    def id(self) -> str:
        """Stable profile id, e.g. ``"wking-v1"``."""
        ...

    @property
    def service_uuid(self) -> str:
        """The vendor service UUID (128-bit, lowercase)."""
        ...

    @property
    def command_uuid(self) -> str:
        """Characteristic the central writes command fragments to."""
        ...

    @property
    def notify_uuid(self) -> str:
        """Characteristic the speaker notifies response and event fragments on."""
        ...

    @property
    def models(self) -> Mapping[str, ModelInfo]:
        """Known models by id."""
        ...

    def match(
        self,
        name: str | None,
        service_uuids: Iterable[str] | None = (),
        manufacturer_data: Mapping[int, bytes] | None = None,
    ) -> str | None:
        """The model id if the advertisement is this profile's, else ``None``; never raises."""
        ...

    def new_codec(self, role: Role, *, mtu: int = DEFAULT_MTU) -> FrameCodec:
        """A fresh codec for one link."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WkingV1Profile:
    """The built-in ``wking-v1`` profile (this project's own specification).

    Attributes:
        id: ``"wking-v1"``.
        service_uuid: :data:`~wking_device.protocol.WKING_SERVICE_UUID`.
        command_uuid: :data:`~wking_device.protocol.WKING_COMMAND_CHAR_UUID`.
        notify_uuid: :data:`~wking_device.protocol.WKING_NOTIFY_CHAR_UUID`.
        company_id: Manufacturer-data company id (0xFFFF, see module docstring).
        name_prefix: Advertised-name prefix.
        models: Known models by id.
    """

    id: str = "wking-v1"
    service_uuid: str = WKING_SERVICE_UUID
    command_uuid: str = WKING_COMMAND_CHAR_UUID
    notify_uuid: str = WKING_NOTIFY_CHAR_UUID
    company_id: int = COMPANY_ID_TESTING
    name_prefix: str = NAME_PREFIX
    models: Mapping[str, ModelInfo] = field(default_factory=lambda: MODELS, hash=False)

    def match(
        self,
        name: str | None,
        service_uuids: Iterable[str] | None = (),
        manufacturer_data: Mapping[int, bytes] | None = None,
    ) -> str | None:
        """Recognise a W-KING speaker from advertisement fields; never raises.

        A device is a W-KING speaker when its name starts with ``W-KING`` (any case), it lists
        the vendor service UUID, or it carries manufacturer data under 0xFFFF that starts with
        ``b"WK"``. The model comes from valid manufacturer data, else from the name, else it is
        :data:`UNKNOWN_MODEL`. Malformed W-KING manufacturer data is not an error here (use
        :func:`parse_manufacturer_data` for a strict check); it just does not give the model.

        Args:
            name: Advertised local name, or ``None``.
            service_uuids: Advertised service UUIDs (any case).
            manufacturer_data: Company id -> payload, as in bleak's ``AdvertisementData``.

        Returns:
            A model id (a key of :attr:`models`, or ``"unknown"``) or ``None`` for another device.
        """
        raw = manufacturer_data.get(self.company_id) if manufacturer_data else None
        payload = bytes(raw) if isinstance(raw, bytes | bytearray) else None
        mfr_match = payload is not None and payload[:2] == MANUFACTURER_MAGIC
        name_match = isinstance(name, str) and name.casefold().startswith(
            self.name_prefix.casefold()
        )
        uuid_match = any(
            isinstance(u, str) and u.lower() == self.service_uuid for u in service_uuids or ()
        )
        if not (mfr_match or name_match or uuid_match):
            return None
        if payload is not None and mfr_match and len(payload) == _MANUFACTURER_SIZE:
            for model in self.models.values():
                if model.code == payload[2]:
                    return model.id
        if name_match:
            named = model_from_name(name, self.models.values())
            if named is not None:
                return named.id
        return UNKNOWN_MODEL

    def new_codec(self, role: Role, *, mtu: int = DEFAULT_MTU) -> FrameCodec:
        """A fresh :class:`FrameCodec` for one link.

        Args:
            role: ``Role.CENTRAL`` on the host, ``Role.PERIPHERAL`` in a (simulated) speaker.
            mtu: The ATT MTU negotiated so far.
        """
        return FrameCodec(role, mtu=mtu)


#: The built-in profile.
WKING_V1: Final = WkingV1Profile()
