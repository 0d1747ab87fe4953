"""How the simulator picks models and builds advertisements from the protocol's profile.

This module owns the fleet's model rotation and the final advertisement bytes (the profile's
advertising data and scan response, plus a TX power level when it fits). The layouts themselves
belong to :mod:`wking_device.protocol`; this module adds nothing to them but the rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

from wking_device.protocol import (
    MODELS,
    build_advertising_data,
    build_scan_response,
    model_by_code,
)

__all__ = ["SimModel", "advertisement_payloads", "model_for_index"]

_AD_TX_POWER = 0x0A
_LEGACY_MAX = 31


@dataclass(frozen=True, slots=True, kw_only=True)
class SimModel:
    """A model as the simulator uses it.

    Attributes:
        model_id: The protocol's model id (``"x10"``).
        name: Display name (``"W-KING X10"``).
        short_name: The name without the brand (``"X10"``).
        code: Model code.
        model_number: The Device Information model number string (``"WK-X10"``).
        firmware: Default firmware version.
        hardware: Default hardware revision.
    """

    model_id: str
    name: str
    short_name: str
    code: int
    model_number: str
    firmware: str
    hardware: str


def model_for_index(index: int) -> SimModel:
    """The model of fleet speaker ``index`` (1-based): the MODELS table in order, cycling."""
    models = list(MODELS.values())
    info = models[(index - 1) % len(models)]
    short = info.name.removeprefix("W-KING").strip() or info.name
    return SimModel(
        model_id=info.id,
        name=info.name,
        short_name=short,
        code=info.code,
        model_number=f"WK-{info.id.upper()}",
        firmware=info.firmware_version,
        hardware=info.hardware_version,
    )


def advertisement_payloads(
    *, model_code: int, name: str, tx_power: int | None
) -> tuple[bytes, bytes]:
    """Advertising data and scan response for a speaker (the name in the scan response).

    Args:
        model_code: The model code (an unknown code advertises the first model's layout).
        name: The advertised name.
        tx_power: TX power level to add to the scan response when it fits, or ``None``.

    Returns:
        ``(advertising_data, scan_response)``; the caller enforces the 31-byte limit.
    """
    info = model_by_code(model_code) or next(iter(MODELS.values()))
    adv = build_advertising_data(info)
    scan_rsp = build_scan_response(name)
    if tx_power is not None and len(scan_rsp) + 3 <= _LEGACY_MAX:
        scan_rsp += bytes((2, _AD_TX_POWER, tx_power & 0xFF))
    return adv, scan_rsp
