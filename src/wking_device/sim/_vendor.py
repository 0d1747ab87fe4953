"""The speaker's side of the ``wking-v1`` vendor channel: state, command handling, events.

This module owns :class:`SpeakerState` and :class:`VendorHandler`, which turns command frames
(decoded by :class:`wking_device.protocol.FrameCodec` in the peripheral role) into responses and
state changes. It does not encode or decode bytes itself (the protocol package does; there is one
codec) and knows nothing of bumble or GATT: the speaker (:mod:`wking_device.sim._speaker`) feeds
it and sends what it returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from wking_device.protocol import (
    BatteryLevel,
    Command,
    EqPreset,
    Event,
    GetInfo,
    GetState,
    InfoResult,
    LightMode,
    MalformedCommand,
    Ping,
    PingResult,
    PoweringOff,
    PowerOff,
    PowerOffReason,
    PowerState,
    Response,
    SetEq,
    SetLight,
    SetVolume,
    StateChanged,
    StateResult,
    Status,
    UnsupportedCommand,
)

__all__ = ["SpeakerState", "VendorHandler"]

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True, kw_only=True)
class SpeakerState:
    """What a simulated speaker currently is; tests read and change it directly.

    Changing a field here does not notify anyone; use the speaker's methods
    (:meth:`wking_device.sim.SimSpeaker.set_battery`, ...) for changes a central should hear of.

    Attributes:
        volume: 0-100.
        eq: The EQ preset.
        light: The light mode.
        battery: Battery level, 0-100 % (a float while it drains; reported rounded down).
        charging: Whether the speaker is charging.
        power: The power state; after a power-off command the speaker stops advertising.
        commands: How many vendor commands it answered (all connections together).
    """

    volume: int = 30
    eq: EqPreset = EqPreset.FLAT
    light: LightMode = LightMode.STATIC
    battery: float = 80.0
    charging: bool = False
    power: PowerState = PowerState.ON
    commands: int = 0

    @property
    def battery_level(self) -> int:
        """The battery level as reported (whole percent)."""
        return max(0, min(100, int(self.battery)))


@dataclass(slots=True, kw_only=True)
class _Identity:
    model_code: int
    firmware: str
    hardware: str
    serial: str


class VendorHandler:
    """Answers vendor commands against a :class:`SpeakerState`.

    Args:
        state: The speaker's state (changed in place).
        model_code: The model code reported by ``GetInfo``.
        firmware: Firmware version text.
        hardware: Hardware revision text.
        serial: Serial number text.
        has_lights: Whether the model has a light show; others answer ``SetLight`` with
            ``UNSUPPORTED`` (as the protocol's MODELS table says).
    """

    def __init__(
        self,
        state: SpeakerState,
        *,
        model_code: int,
        firmware: str,
        hardware: str,
        serial: str,
        has_lights: bool = True,
    ) -> None:
        self.state = state
        self.has_lights = has_lights
        self._identity = _Identity(
            model_code=model_code, firmware=firmware, hardware=hardware, serial=serial
        )

    def handle(
        self, command: Command | UnsupportedCommand | MalformedCommand
    ) -> list[Response | Event]:
        """Answer one command frame.

        Returns:
            The response first, then any events the command caused (state changed, powering
            off), in the order the speaker sends them.
        """
        self.state.commands += 1
        seq = command.seq
        if isinstance(command, UnsupportedCommand):
            return [Response(seq=seq, opcode=command.opcode, status=Status.UNSUPPORTED)]
        if isinstance(command, MalformedCommand):
            return [Response(seq=seq, opcode=command.opcode, status=Status.BAD_PARAM)]
        answer = self._query(command)
        if answer is not None:
            return [answer]
        opcode = command.opcode
        if self.state.power is not PowerState.ON:
            return [Response(seq=seq, opcode=opcode, status=Status.BUSY)]
        if isinstance(command, PowerOff):
            self.state.power = PowerState.SHUTTING_DOWN
            return [
                Response(seq=seq, opcode=opcode),
                PoweringOff(seq=0, reason=PowerOffReason.REQUESTED),
            ]
        status, changed = self._set(command)
        frames: list[Response | Event] = [Response(seq=seq, opcode=opcode, status=status)]
        if changed:
            frames.append(self.state_changed())
        return frames

    def _query(self, command: Command) -> Response | None:
        """Answer a command that only reads (info, state, ping), else ``None``."""
        seq, opcode = command.seq, command.opcode
        if isinstance(command, GetInfo):
            ident = self._identity
            info = InfoResult(
                model_code=ident.model_code,
                firmware_version=ident.firmware,
                hardware_version=ident.hardware,
                serial_number=ident.serial,
            )
            return Response(seq=seq, opcode=opcode, result=info)
        if isinstance(command, GetState):
            return Response(seq=seq, opcode=opcode, result=self.state_result())
        if isinstance(command, Ping):
            return Response(seq=seq, opcode=opcode, result=PingResult(data=command.data))
        return None

    def _set(self, command: Command) -> tuple[Status, bool]:
        """Apply a setter command; return its status and whether the state changed."""
        state = self.state
        if isinstance(command, SetVolume):
            changed = state.volume != command.volume
            state.volume = command.volume
        elif isinstance(command, SetEq):
            changed = state.eq != command.preset
            state.eq = EqPreset(command.preset)
        elif isinstance(command, SetLight):
            if not self.has_lights:
                return Status.UNSUPPORTED, False
            changed = state.light != command.mode
            state.light = LightMode(command.mode)
        else:  # a Command subclass the protocol added later
            return Status.UNSUPPORTED, False
        return Status.OK, changed

    def state_result(self) -> StateResult:
        """The current state as a ``GetState`` result."""
        state = self.state
        return StateResult(
            volume=state.volume,
            eq=state.eq,
            light=state.light,
            power=state.power,
            battery=state.battery_level,
            charging=state.charging,
        )

    def state_changed(self) -> StateChanged:
        """A ``StateChanged`` event for the current state."""
        state = self.state
        return StateChanged(seq=0, volume=state.volume, eq=state.eq, light=state.light)

    def battery_event(self) -> BatteryLevel:
        """A ``BatteryLevel`` event for the current level."""
        return BatteryLevel(seq=0, level=self.state.battery_level, charging=self.state.charging)
