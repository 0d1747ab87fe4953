"""What a simulated speaker is before it runs: :class:`SpeakerSpec` and deterministic fleets.

This module owns the speaker specification and the deterministic address/name/model scheme of
fleets (the same index gives the same speaker in every process). It imports nothing of bumble,
so specs can be built where the ``sim`` extra is missing; running them is
:mod:`wking_device.sim._speaker`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wking_device.errors import UsageError
from wking_device.protocol import EqPreset, LightMode
from wking_device.sim._faults import FaultPlan
from wking_device.sim._models import model_for_index

__all__ = ["SpeakerSpec", "speaker_address"]


def speaker_address(index: int) -> str:
    """The deterministic random static address of fleet speaker ``index`` (1-based).

    ``C0:57:4B`` (``W`` ``K``) then the index in three bytes: the two top bits are 1, as a
    random static address requires, and the same index gives the same address in every process.
    """
    if not 1 <= index <= 0xFFFFFF:
        raise UsageError(f"speaker index must be 1..{0xFFFFFF}, got {index}")
    return f"C0:57:4B:{index >> 16 & 0xFF:02X}:{index >> 8 & 0xFF:02X}:{index & 0xFF:02X}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakerSpec:
    """What one simulated speaker is, before it runs.

    Attributes:
        address: A random static address (``C0:…``-``FF:…``); see :func:`speaker_address`.
        name: The advertised name (in the scan response), e.g. ``"W-KING X10 0001"``.
        model_id: The model id from :data:`wking_device.protocol.MODELS`.
        model_code: The model code the advertisement and ``GetInfo`` carry.
        model_number: The Device Information model number string.
        firmware: Firmware revision.
        hardware: Hardware revision.
        serial: Serial number.
        rssi: Initial RSSI in dBm as seen by the world's adapter.
        tx_power: TX power level advertised in the scan response (dBm), or ``None``.
        adv_interval_ms: Advertising interval.
        mtu: The largest ATT MTU the speaker accepts (23-517); vendor frames longer than
            ``mtu - 3`` are sent as several notifications.
        volume: Initial volume.
        battery: Initial battery level.
        eq: Initial EQ preset.
        light: Initial light mode.
        has_lights: Whether ``SetLight`` works. ``True`` for every fleet speaker, so the same
            commands work on all of them, although the protocol's MODELS table lists models
            without a light show; set ``False`` to test the ``UNSUPPORTED`` answer.
        faults: The initial fault plan (a fresh, fault-free one when ``None``).
    """

    address: str
    name: str
    model_id: str
    model_code: int
    model_number: str
    firmware: str = "2.4.1"
    hardware: str = "B"
    serial: str = "WK000000"
    rssi: int = -60
    tx_power: int | None = -8
    adv_interval_ms: float = 100.0
    mtu: int = 247
    volume: int = 30
    battery: int = 80
    eq: EqPreset = EqPreset.FLAT
    light: LightMode = LightMode.STATIC
    has_lights: bool = True
    faults: FaultPlan | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        try:
            first = int(self.address.split(":")[0], 16)
        except ValueError as exc:
            raise UsageError(f"not a Bluetooth address: {self.address!r}") from exc
        if first & 0xC0 != 0xC0 or len(self.address) != 17:
            raise UsageError(
                f"{self.address!r} is not a random static address (the first byte must be C0-FF)"
            )
        if not 0 <= self.volume <= 100 or not 0 <= self.battery <= 100:
            raise UsageError("volume and battery must be 0..100")
        if not 23 <= self.mtu <= 517:
            raise UsageError(f"mtu must be 23..517, got {self.mtu}")
        if self.adv_interval_ms < 20:
            raise UsageError("adv_interval_ms must be at least 20 ms (the Bluetooth minimum)")

    @classmethod
    def for_index(cls, index: int, **overrides: Any) -> SpeakerSpec:
        """The deterministic spec of fleet speaker ``index`` (1-based): address, name, model.

        Models cycle through the protocol's MODELS table; the name is
        ``"W-KING <model> <index:04d>"``.

        Args:
            index: 1-based position in the fleet.
            **overrides: Field values to use instead of the defaults.
        """
        model = model_for_index(index)
        values: dict[str, Any] = {
            "address": speaker_address(index),
            "name": f"W-KING {model.short_name} {index:04d}",
            "model_id": model.model_id,
            "model_code": model.code,
            "model_number": model.model_number,
            "firmware": model.firmware,
            "hardware": model.hardware,
            "serial": f"WK{model.code:02X}{index:06d}",
            "rssi": -45 - (index * 7) % 40,
            "volume": 20 + (index * 5) % 60,
            "battery": 100 - (index * 3) % 60,
        }
        values.update(overrides)
        return cls(**values)
