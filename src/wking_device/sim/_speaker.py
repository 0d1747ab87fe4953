"""One simulated W-KING speaker: a bumble peripheral with GATT services, advertising and faults.

This module owns :class:`SimSpeaker`, a running speaker built from a
:class:`~wking_device.sim.SpeakerSpec`: bumble controller, host and device on the world's link,
its GATT server, its state and its fault plan. The GATT layout and frames follow the
``wking-v1`` profile of :mod:`wking_device.protocol`; this module does not encode frames
itself, and it does not know about bleak (that is :mod:`wking_device.sim._client`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bumble import att, hci
from bumble.device import AdvertisingType, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from wking_device.errors import UsageError
from wking_device.protocol import (
    BATTERY_LEVEL_UUID,
    BATTERY_SERVICE_UUID,
    DEVICE_INFORMATION_SERVICE_UUID,
    FIRMWARE_REVISION_UUID,
    HARDWARE_REVISION_UUID,
    MANUFACTURER_NAME_UUID,
    MODEL_NUMBER_UUID,
    SERIAL_NUMBER_UUID,
    WKING_COMMAND_CHAR_UUID,
    WKING_NOTIFY_CHAR_UUID,
    WKING_SERVICE_UUID,
    BrokenFrame,
    Button,
    ButtonAction,
    ButtonPressed,
    Event,
    Frame,
    FrameCodec,
    PowerState,
    Response,
    Role,
)
from wking_device.sim._faults import FaultPlan
from wking_device.sim._models import advertisement_payloads
from wking_device.sim._spec import SpeakerSpec
from wking_device.sim._stack import CONNECTION_TIMEOUT, SimController, SimHost
from wking_device.sim._vendor import SpeakerState, VendorHandler

if TYPE_CHECKING:
    from bumble.device import Connection

    from wking_device.sim._world import SimWorld

__all__ = ["MAX_ADV_DATA", "SimSpeaker"]

_LOGGER = logging.getLogger(__name__)

#: Legacy advertising data and scan response are each at most 31 bytes (Core Vol 6, Part B 2.3.1).
MAX_ADV_DATA = 31
_ABORT_STATUS = hci.HCI_ErrorCode.CONNECTION_FAILED_TO_BE_ESTABLISHED_ERROR
_RSSI_LOW, _RSSI_HIGH = -100.0, -30.0


def _refuse_read(_connection: Connection) -> bytes:
    raise att.ATT_Error(att.ATT_READ_NOT_PERMITTED_ERROR)


def _refuse_write(_connection: Connection, _value: bytes) -> None:
    raise att.ATT_Error(att.ATT_WRITE_NOT_PERMITTED_ERROR)


def _value(read: Any = None, write: Any = None) -> CharacteristicValue[bytes]:
    """A value whose missing side answers with an ATT error.

    bumble 0.0.236's GATT server does not check permissions; an operation on a value without
    the matching function raises inside the server and no response is sent at all (the central
    waits for the 30 s ATT timeout). A real peripheral answers "not permitted".
    """
    return CharacteristicValue(read=read or _refuse_read, write=write or _refuse_write)


class SimSpeaker:
    """A running simulated speaker (create it through :class:`~wking_device.sim.SimWorld`).

    Attributes:
        spec: What it was built from.
        state: Its live state (volume, EQ, light, battery, power); tests may read and change it.
        connect_attempts: Connection attempts that reached it (counted for ``FaultPlan``).
        operations: GATT reads and writes it served.
        responses_corrupted: Vendor responses the fault plan corrupted (``malformed_responses``).
        responses_dropped: Vendor responses the fault plan did not send (``drop_responses``).
        commands_received: Vendor commands it decoded (each is answered, late or never as the
            fault plan says).
        responses_sent: Vendor responses it sent (late ones included), counted once the last
            fragment was handed to the link. Wait on these with :meth:`wait_for`.
    """

    def __init__(self, world: SimWorld, spec: SpeakerSpec) -> None:
        self.spec = spec
        self._world = world
        self.state = SpeakerState(
            volume=spec.volume,
            eq=spec.eq,
            light=spec.light,
            battery=float(spec.battery),
        )
        self._vendor = VendorHandler(
            self.state,
            model_code=spec.model_code,
            firmware=spec.firmware,
            hardware=spec.hardware,
            serial=spec.serial,
            has_lights=spec.has_lights,
        )
        self.connect_attempts = 0
        self.operations = 0
        self.responses_corrupted = 0
        self.responses_dropped = 0
        self.commands_received = 0
        self.responses_sent = 0
        self._counted = asyncio.Event()
        self._rng = random.Random(spec.address)  # noqa: S311 - fault dice, not cryptography
        self._rssi = float(spec.rssi)
        self._reported_battery = self.state.battery_level
        self._codecs: dict[int, FrameCodec] = {}
        self._send_locks: dict[int, asyncio.Lock] = {}
        self._ops: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._faults = FaultPlan()
        self._unobserve = self._faults.observe(self._on_fault_changed)
        self.bumble_address = hci.Address(spec.address, hci.Address.RANDOM_DEVICE_ADDRESS)
        self.controller = SimController(f"speaker {spec.name}", world.link, self.bumble_address)
        self.controller.rssi = spec.rssi
        self.controller.connection_gate = self._connection_gate
        self.controller.instant_connect = False
        host = SimHost(controller_source=self.controller, controller_sink=self.controller)
        self.device = Device(name=spec.name, address=self.bumble_address, host=host)
        self.device.gatt_server.max_mtu = spec.mtu
        self._build_gatt()
        self.device.on("connection", self._on_connection)
        self.adv_data, self.scan_response = self._build_advertisement()
        self.faults = spec.faults if spec.faults is not None else FaultPlan()

    # --- identity ---------------------------------------------------------------------------

    @property
    def address(self) -> str:
        """The speaker's address as bleak reports it (``C0:57:4B:00:00:01``)."""
        return self.spec.address

    @property
    def name(self) -> str:
        """The advertised name."""
        return self.spec.name

    @property
    def rssi(self) -> int:
        """The RSSI the world's adapters see for this speaker (dBm), unless set per adapter."""
        return int(self.controller.rssi)

    @rssi.setter
    def rssi(self, value: int) -> None:
        self._rssi = float(value)
        self.controller.rssi = int(value)

    def set_rssi(self, value: int | None, *, adapter: str | None = None) -> None:
        """Set the RSSI one adapter of the world sees for this speaker (a simple position model).

        Args:
            value: dBm; ``None``: out of that adapter's reach (it hears nothing and cannot
                connect; a connection through it drops with reason 0x08, connection timeout).
            adapter: The adapter's name; ``None`` sets :attr:`rssi`, what every adapter without
                a value of its own sees (RSSI drift moves only that one).

        Raises:
            UsageError: No such adapter in the world, or ``None`` without an adapter.
        """
        if adapter is None:
            if value is None:
                raise UsageError("a speaker out of every adapter's reach: use remove_speaker()")
            self.rssi = value
            return
        spec = self._world.adapter_spec(adapter)
        assert spec.address is not None
        key = bytes(hci.Address(spec.address, hci.Address.RANDOM_DEVICE_ADDRESS).address_bytes)
        self.controller.rssi_by_receiver[key] = None if value is None else int(value)
        if value is None:
            self._world.drop_reach(self, adapter)

    def rssi_on(self, adapter: str) -> int | None:
        """The RSSI ``adapter`` sees for this speaker; ``None``: out of its reach."""
        spec = self._world.adapter_spec(adapter)
        assert spec.address is not None
        key = bytes(hci.Address(spec.address, hci.Address.RANDOM_DEVICE_ADDRESS).address_bytes)
        return self.controller.rssi_by_receiver.get(key, self.rssi)

    @property
    def connected(self) -> bool:
        """Whether a central is connected."""
        return bool(self.controller.le_connections)

    # --- faults -----------------------------------------------------------------------------

    @property
    def faults(self) -> FaultPlan:
        """The live fault plan; assign a new plan or change its fields at any time."""
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        self._unobserve()
        self._faults = plan
        self._unobserve = plan.observe(self._on_fault_changed)
        for name in ("connectable", "in_range"):
            self._on_fault_changed(name)

    def _on_fault_changed(self, name: str) -> None:
        plan = self._faults
        if name == "connectable":
            self.controller.connectable = plan.connectable
        elif name == "in_range":
            self.controller.set_out_of_range(not plan.in_range)

    def _connection_gate(self, initiator: hci.Address) -> int | None:
        del initiator
        self.connect_attempts += 1
        if self.connect_attempts in self._faults.abort_connect_attempts:
            _LOGGER.debug("%s: aborting connection attempt %d", self.name, self.connect_attempts)
            return int(_ABORT_STATUS)
        return None

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def advertising_phase_s(self) -> float:
        """A deterministic offset (0..1 interval) of the first advertisement after start.

        Real advertisers are not in phase; a fleet started in one go would be, and a central
        connecting to one speaker after another would then wait a whole interval each time.
        """
        golden = 0.6180339887498949
        fraction = (int.from_bytes(bytes(self.bumble_address.address_bytes), "little") * golden) % 1
        return fraction * self.spec.adv_interval_ms / 1000

    async def start(self, *, stagger: bool = False) -> None:
        """Power on and start advertising.

        Args:
            stagger: Start advertising after :attr:`advertising_phase_s` in the background
                (fleets do, so speakers are out of phase), instead of at once.
        """
        await self.device.power_on()
        if stagger and self.advertising_phase_s > 0:
            self._spawn(self._start_advertising_later(self.advertising_phase_s))
        else:
            await self.start_advertising()

    async def _start_advertising_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self.start_advertising()

    async def start_advertising(self) -> None:
        """(Re)start advertising with the spec's data (connectable; faults decide the rest)."""
        await self.device.start_advertising(
            advertising_type=AdvertisingType.UNDIRECTED_CONNECTABLE_SCANNABLE,
            auto_restart=True,
            advertising_data=self.adv_data,
            scan_response_data=self.scan_response,
            advertising_interval_min=self.spec.adv_interval_ms,
            advertising_interval_max=self.spec.adv_interval_ms,
        )

    async def close(self) -> None:
        """Stop advertising, drop connections and leave the link."""
        self._unobserve()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._world.link.remove_controller(self.controller)
        for adv_set in self.controller.advertising_sets.values():
            adv_set.stop()
        self.controller.le_legacy_advertiser.stop()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # e.g. a notification on a link that dropped meanwhile: the central sees the loss
            _LOGGER.debug("%s: background task failed: %r", self.name, exc)

    # --- advertising ------------------------------------------------------------------------

    def _build_advertisement(self) -> tuple[bytes, bytes]:
        adv, scan_rsp = advertisement_payloads(
            model_code=self.spec.model_code, name=self.spec.name, tx_power=self.spec.tx_power
        )
        for what, data in (("advertising data", adv), ("scan response", scan_rsp)):
            if len(data) > MAX_ADV_DATA:
                raise UsageError(
                    f"{self.spec.name}: {what} is {len(data)} bytes; a legacy advertisement "
                    f"holds at most {MAX_ADV_DATA}"
                )
        return adv, scan_rsp

    # --- GATT -------------------------------------------------------------------------------

    def _build_gatt(self) -> None:
        spec = self.spec

        def text(value: str) -> CharacteristicValue[bytes]:
            return _value(read=self._reader(value.encode))

        readable = Characteristic.Permissions.READABLE
        dis = Service(
            DEVICE_INFORMATION_SERVICE_UUID,
            [
                Characteristic(
                    MANUFACTURER_NAME_UUID, Characteristic.READ, readable, text("W-KING")
                ),
                Characteristic(
                    MODEL_NUMBER_UUID, Characteristic.READ, readable, text(spec.model_number)
                ),
                Characteristic(
                    SERIAL_NUMBER_UUID, Characteristic.READ, readable, text(spec.serial)
                ),
                Characteristic(
                    FIRMWARE_REVISION_UUID, Characteristic.READ, readable, text(spec.firmware)
                ),
                Characteristic(
                    HARDWARE_REVISION_UUID, Characteristic.READ, readable, text(spec.hardware)
                ),
            ],
        )
        self._battery_char: Characteristic[bytes] = Characteristic(
            BATTERY_LEVEL_UUID,
            Characteristic.READ | Characteristic.NOTIFY,
            readable,
            _value(read=self._reader(lambda: bytes((self.state.battery_level,)))),
        )
        battery = Service(BATTERY_SERVICE_UUID, [self._battery_char])
        self._command_char: Characteristic[bytes] = Characteristic(
            WKING_COMMAND_CHAR_UUID,
            Characteristic.WRITE | Characteristic.WRITE_WITHOUT_RESPONSE,
            Characteristic.Permissions.WRITEABLE,
            _value(write=self._on_command_write),
        )
        self._notify_char: Characteristic[bytes] = Characteristic(
            WKING_NOTIFY_CHAR_UUID,
            Characteristic.NOTIFY,
            readable,
            _value(),
        )
        vendor = Service(WKING_SERVICE_UUID, [self._command_char, self._notify_char])
        self.device.add_services([dis, battery, vendor])

    def _reader(self, produce: Any) -> Any:
        async def read(connection: Connection) -> bytes:
            if await self._begin_operation(connection):
                return b""
            delay = self._faults.response_delay_s
            if delay:
                await asyncio.sleep(delay)
            value: bytes = produce()
            return value

        return read

    async def _begin_operation(self, connection: Connection) -> bool:
        """Count one GATT operation; return True when the fault plan drops the link instead."""
        self.operations += 1
        handle = connection.handle
        done = self._ops.get(handle, 0)
        limit = self._faults.disconnect_after_ops
        if limit is not None and done >= limit:
            _LOGGER.debug("%s: dropping the link after %d operations", self.name, done)
            self._world.link.drop_connection(
                self.controller, connection.peer_address, CONNECTION_TIMEOUT
            )
            return True
        self._ops[handle] = done + 1
        return False

    def _on_connection(self, connection: Connection) -> None:
        handle = connection.handle
        self._ops[handle] = 0
        self._codecs[handle] = FrameCodec(Role.PERIPHERAL)
        self._send_locks[handle] = asyncio.Lock()

        def on_disconnection(_reason: int) -> None:
            self._ops.pop(handle, None)
            self._codecs.pop(handle, None)
            self._send_locks.pop(handle, None)
            if self.state.power is PowerState.SHUTTING_DOWN:
                self.state.power = PowerState.STANDBY

        connection.on("disconnection", on_disconnection)

    async def _on_command_write(self, connection: Connection, value: bytes) -> None:
        if await self._begin_operation(connection):
            return
        codec = self._codecs.get(connection.handle)
        if codec is None:
            return
        # One ATT write is one fragment: resynchronise on fragment boundaries, like the central
        # (docs/protocol.md, "Resynchronisation"); a broken command is dropped unanswered.
        for frame in codec.receive_fragment(value):
            if isinstance(frame, BrokenFrame):
                _LOGGER.debug("%s: bad command bytes dropped (%s)", self.name, frame.reason)
            else:
                self._count("commands_received")
                self._spawn(self._answer(connection, frame))

    async def _answer(self, connection: Connection, command: Frame) -> None:
        plan = self._faults
        outgoing = self._vendor.handle(command)  # type: ignore[arg-type]
        if plan.response_delay_s:
            await asyncio.sleep(plan.response_delay_s)
        for frame in outgoing:
            if isinstance(frame, Response):
                if plan.drop_responses and self._rng.random() < plan.drop_responses:
                    self.responses_dropped += 1
                    continue
                corrupt = bool(
                    plan.malformed_responses and self._rng.random() < plan.malformed_responses
                )
                self.responses_corrupted += corrupt
                if await self._send_frame(connection, frame, corrupt=corrupt):
                    self._count("responses_sent")
            else:
                await self._send_event(connection, frame)
        if self.state.power is PowerState.SHUTTING_DOWN:
            await self._power_off()

    async def _send_event(self, connection: Connection, event: Event) -> None:
        plan = self._faults
        if plan.drop_notifications and self._rng.random() < plan.drop_notifications:
            return
        await self._send_frame(connection, event, corrupt=False)

    async def _send_frame(self, connection: Connection, frame: Frame, *, corrupt: bool) -> bool:
        """Send a frame's fragments; False if the connection went away first."""
        codec = self._codecs.get(connection.handle)
        if codec is None:
            return False
        codec.mtu = max(23, min(connection.att_mtu, 517))
        if not isinstance(frame, Response):
            frame = dataclasses.replace(frame, seq=codec.next_seq())
        fragments = codec.send(frame)
        if corrupt:
            fragments = self._corrupt(fragments, codec.max_fragment)
        # The fragments of two frames never interleave: each frame starts a new fragment and
        # the receiver reassembles by fragment boundaries.
        lock = self._send_locks.setdefault(connection.handle, asyncio.Lock())
        async with lock:
            for fragment in fragments:
                if connection.handle not in self._codecs:
                    return False
                await self.device.notify_subscriber(connection, self._notify_char, fragment)
        return True

    def _count(self, counter: str) -> None:
        setattr(self, counter, getattr(self, counter) + 1)
        self._counted.set()

    async def wait_for(
        self, condition: Callable[[SimSpeaker], bool], timeout_s: float = 10.0
    ) -> None:
        """Return once ``condition(self)`` holds, checked whenever the speaker is asked or answers.

        A test's way to wait for a late answer instead of sleeping, e.g.
        ``await speaker.wait_for(lambda s: s.responses_sent >= 2)``.

        Args:
            condition: Read the counters (``commands_received``, ``responses_sent``, ...).
            timeout_s: Bound on the wait.

        Raises:
            TimeoutError: The condition did not hold within ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            while not condition(self):
                self._counted.clear()
                await self._counted.wait()

    def _corrupt(self, fragments: list[bytes], size: int) -> list[bytes]:
        data = b"".join(fragments)
        if self._faults.malformed_kind == "truncated":
            data = data[: max(1, len(data) - 3)]
        else:
            data = data[:-1] + bytes((data[-1] ^ 0xFF,))
        return [data[i : i + size] for i in range(0, len(data), size)]

    async def _power_off(self) -> None:
        self.state.power = PowerState.STANDBY
        await asyncio.sleep(0.01)  # let the last notifications leave first
        self.controller.silent = True  # no advertisements, whatever bumble's auto-restart does
        for connection in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                await connection.disconnect()

    async def power_on(self) -> None:
        """Power the speaker back on after a power-off command: it advertises again."""
        self.state.power = PowerState.ON
        self.controller.silent = False
        if not self.device.is_advertising:
            await self.start_advertising()

    async def press_button(self, button: Button, action: ButtonAction = ButtonAction.PRESS) -> None:
        """Simulate a button press: connected centrals get a ``ButtonPressed`` event."""
        for connection in list(self.device.connections.values()):
            await self._send_event(connection, ButtonPressed(seq=0, button=button, action=action))

    # --- unsolicited events -----------------------------------------------------------------

    async def notify_state(self) -> None:
        """Tell connected centrals the current volume/EQ/light (a ``StateChanged`` event)."""
        for connection in list(self.device.connections.values()):
            await self._send_event(connection, self._vendor.state_changed())

    async def set_battery(self, level: float) -> None:
        """Set the battery level; centrals hear of a whole-percent change (GATT + vendor event)."""
        self.state.battery = max(0.0, min(100.0, float(level)))
        await self._battery_changed()

    async def _battery_changed(self) -> None:
        level = self.state.battery_level
        if level == self._reported_battery:
            return
        self._reported_battery = level
        plan = self._faults
        for connection in list(self.device.connections.values()):
            if plan.drop_notifications and self._rng.random() < plan.drop_notifications:
                continue
            await self.device.notify_subscriber(connection, self._battery_char, bytes((level,)))
            await self._send_event(connection, self._vendor.battery_event())

    async def tick(self, elapsed_s: float) -> None:
        """Advance simulated time: battery drain and RSSI drift from the fault plan."""
        plan = self._faults
        if plan.rssi_drift_db_per_s:
            self._rssi = min(
                _RSSI_HIGH, max(_RSSI_LOW, self._rssi + plan.rssi_drift_db_per_s * elapsed_s)
            )
            self.controller.rssi = round(self._rssi)
        if plan.battery_drain_per_min and self.state.battery > 0:
            self.state.battery = max(
                0.0, self.state.battery - plan.battery_drain_per_min * elapsed_s / 60
            )
            await self._battery_changed()
