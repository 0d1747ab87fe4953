"""The simulated world: one in-process link, host adapters, N speakers, and bleak backends.

This module owns :class:`SimWorld` (the async context manager tests and ``wking --simulate N``
use), the world's adapters (each a bumble central shared by every bleak scanner and client that
selects it, like a real adapter; one, ``hci0``, unless asked for more; each can be unplugged and
plugged in again), the per-world bleak backend classes and the patching of bleak's platform
backend getters for third-party code. It does not implement speakers
(:mod:`wking_device.sim._speaker`) or the bumble workarounds (:mod:`wking_device.sim._stack`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import bumble
from bleak.backends.adapter import BaseBleakAdapter
from bleak.backends.device import BLEDevice
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakError
from bumble import hci
from bumble.device import Device

from wking_device.ble._backend import BleBackend
from wking_device.errors import AdapterUnavailable, DeviceNotFound, UsageError
from wking_device.sim._client import SimClient
from wking_device.sim._faults import FaultPlan
from wking_device.sim._scanner import SimDeviceDetails, SimScanner, address_string
from wking_device.sim._speaker import SimSpeaker
from wking_device.sim._spec import SpeakerSpec
from wking_device.sim._stack import CONNECTION_TIMEOUT, SimController, SimHost, SimLink

if TYPE_CHECKING:
    from bumble.device import Advertisement

__all__ = ["ADAPTER_ADDRESS", "DEFAULT_ADAPTER", "AdapterSpec", "SimWorld", "adapter_not_found"]

_LOGGER = logging.getLogger(__name__)

#: The first adapter's random static address (adapter ``i`` ends in ``i + 1``).
ADAPTER_ADDRESS = "F0:57:4B:AD:00:01"
#: The name of a world's adapter when none are named (BlueZ's first adapter).
DEFAULT_ADAPTER = "hci0"
_START_CONCURRENCY = 25
_CLOSE_ROUNDS = 5
_BUMBLE_DIR = str(Path(bumble.__file__).parent)
_WORK_QUEUE_PUMP = "AsyncRunner.WorkQueue.run"


def _is_bumble_task(task: asyncio.Task[Any]) -> bool:
    """Whether bumble created ``task`` (its coroutine is bumble code), pumps excepted."""
    code = getattr(task.get_coro(), "cr_code", None)
    if code is None:
        return False
    filename: str = code.co_filename
    return filename.startswith(_BUMBLE_DIR) and code.co_qualname != _WORK_QUEUE_PUMP


def adapter_not_found(name: str) -> BleakError:
    """What bleak's BlueZ manager raises for an adapter BlueZ does not have (``_check_adapter``)."""
    return BleakError(f"adapter '{name}' not found")


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    """One simulated host adapter.

    Attributes:
        name: Its BlueZ name (``hci0``, ``hci1``...), as bleak's ``bluez={"adapter": ...}``.
        address: Its random static address (``None``: ``F0:57:4B:AD:00:<index + 1>``).
        connection_slots: Connections its controller holds at once (``None``: the world's
            ``connection_slots``).
    """

    name: str
    address: str | None = None
    connection_slots: int | None = None


class _Adapter:
    """One host adapter of the world: a bumble central that scanners and clients share."""

    def __init__(self, world: SimWorld, name: str, address: str, slots: int | None) -> None:
        self.name = name
        self.address = address
        self.connection_slots = slots
        bumble_address = hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS)
        self.bumble_address = bumble_address
        self.controller = SimController(f"adapter {name}", world.link, bumble_address)
        self.controller.instant_connect = world.instant_connect
        host = SimHost(controller_source=self.controller, controller_sink=self.controller)
        self.device = Device(name=f"wking-sim-{name}", address=bumble_address, host=host)
        self.connect_lock = asyncio.Lock()
        self._scan_lock = asyncio.Lock()
        self._scanners: dict[int, SimScanner] = {}
        self._scan_active: bool | None = None
        self.present = True
        self.device.on("advertisement", self._on_advertisement)

    async def start(self) -> None:
        await self.device.power_on()

    async def add_scanner(self, scanner: SimScanner) -> None:
        async with self._scan_lock:
            self._scanners[id(scanner)] = scanner
            await self._rescan()

    async def remove_scanner(self, scanner: SimScanner) -> None:
        async with self._scan_lock:
            self._scanners.pop(id(scanner), None)
            if self.present:
                await self._rescan()

    async def _rescan(self) -> None:
        want: bool | None = None
        if self._scanners:
            want = any(not s.passive for s in self._scanners.values())
        if want == self._scan_active:
            return
        if self._scan_active is not None:
            await self.device.stop_scanning()
        if want is not None:
            await self.device.start_scanning(active=want, filter_duplicates=False)
        self._scan_active = want

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        for scanner in list(self._scanners.values()):
            try:
                scanner.on_advertisement(advertisement)
            except Exception:
                _LOGGER.exception("a scanner's detection callback failed")

    def connected_peers(self) -> list[hci.Address]:
        """The peers this adapter's controller is connected to (whoever connected them)."""
        if not self.present:
            return []
        return [c.peer_address for c in self.device.connections.values()]

    def unplug(self) -> None:
        """Leave the link: every connection drops (reason 0x08) and nothing more is heard."""
        self.present = False
        self._scanners.clear()
        self.controller.sim_link.remove_controller(self.controller)

    async def close(self) -> None:
        self._scanners.clear()
        if not self.present:
            return
        for connection in list(self.device.connections.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.disconnect(), 2)


class SimWorld:
    """Simulated W-KING speakers on an in-process bumble link, with a bleak backend over them.

    Create and use it inside the running event loop, one per test (a bumble controller binds to
    the loop it was created in)::

        async with SimWorld.fleet(3) as world:
            devices = await BleakScanner.discover(2.0, backend=world.backend.scanner)
            async with BleakClient(devices[0], backend=world.backend.client) as client:
                ...

    Args:
        specs: The speakers to start with.
        instant_connect: Connect as soon as the target advertises connectably instead of
            waiting for its next advertisement (large fleets connect much faster).
        tick_s: How often battery drain and RSSI drift are applied.
        connection_slots: How many connections an adapter's controller holds at once (``None``:
            no limit; an :class:`AdapterSpec` may set its own). A connect beyond it fails as BlueZ
            reports a controller's Connection Limit Exceeded: ``BleakDBusError(
            "org.bluez.Error.Failed", "le-connection-concurrent-connection-limit")``.
        adapters: The host adapters, by name (``"hci1"``) or :class:`AdapterSpec`; default one,
            ``hci0`` at :data:`ADAPTER_ADDRESS`. bleak selects one with
            ``bluez={"adapter": "hci1"}``; without it, the first adapter present is used (as
            BlueZ's default adapter). A speaker's RSSI may differ per adapter
            (:meth:`SimSpeaker.set_rssi <wking_device.sim.SimSpeaker.set_rssi>`).
    """

    def __init__(
        self,
        specs: Iterable[SpeakerSpec] = (),
        *,
        instant_connect: bool = False,
        tick_s: float = 0.5,
        connection_slots: int | None = None,
        adapters: Iterable[str | AdapterSpec] | None = None,
    ) -> None:
        if connection_slots is not None and connection_slots < 1:
            raise UsageError(f"connection_slots must be at least 1, got {connection_slots}")
        self.connection_slots = connection_slots
        self._adapter_specs = self._resolve_adapters(adapters, connection_slots)
        self._specs = list(specs)
        addresses = [s.address.upper() for s in self._specs]
        if len(set(addresses)) != len(addresses):
            raise UsageError("two speakers of one world have the same address")
        self.instant_connect = instant_connect
        self.tick_s = tick_s
        self.link: SimLink
        self.speakers: list[SimSpeaker] = []
        self._adapters: dict[str, _Adapter] = {}
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tasks_before: set[asyncio.Task[Any]] = set()
        self._closed = False
        world = self
        self._backend = BleBackend(
            scanner=type("SimBleakScanner", (SimScanner,), {"_world": world}),
            client=type("SimBleakClient", (SimClient,), {"_world": world}),
            adapter=type("SimBleakAdapter", (_SimBleakAdapter,), {"_world": world}),
        )

    @classmethod
    def fleet(
        cls,
        count: int,
        *,
        instant_connect: bool = False,
        faults: FaultPlan | None = None,
        adv_interval_ms: float = 100.0,
        tick_s: float = 0.5,
        connection_slots: int | None = None,
        adapters: Iterable[str | AdapterSpec] | None = None,
    ) -> SimWorld:
        """A world of ``count`` speakers with deterministic addresses, names and models.

        Speaker ``i`` (1-based) is :meth:`SpeakerSpec.for_index(i) <SpeakerSpec.for_index>`:
        the same count gives the same speakers in every process.

        Args:
            count: Number of speakers (0 is allowed).
            instant_connect: See :class:`SimWorld`.
            faults: A fault plan every speaker starts with (each gets its own copy).
            adv_interval_ms: Advertising interval of every speaker.
            tick_s: See :class:`SimWorld`.
            connection_slots: See :class:`SimWorld`.
            adapters: See :class:`SimWorld`.
        """
        if count < 0:
            raise UsageError(f"a fleet needs 0 or more speakers, got {count}")
        specs = [
            SpeakerSpec.for_index(
                i,
                adv_interval_ms=adv_interval_ms,
                faults=faults.model_copy() if faults is not None else None,
            )
            for i in range(1, count + 1)
        ]
        return cls(
            specs,
            instant_connect=instant_connect,
            tick_s=tick_s,
            connection_slots=connection_slots,
            adapters=adapters,
        )

    @staticmethod
    def _resolve_adapters(
        adapters: Iterable[str | AdapterSpec] | None, default_slots: int | None
    ) -> dict[str, AdapterSpec]:
        given = [DEFAULT_ADAPTER] if adapters is None else list(adapters)
        if not given:
            raise UsageError("a world needs at least one adapter")
        resolved: dict[str, AdapterSpec] = {}
        for index, item in enumerate(given):
            spec = AdapterSpec(item) if isinstance(item, str) else item
            if not spec.name or "/" in spec.name:
                raise UsageError(f"an adapter needs a plain name like 'hci1', got {spec.name!r}")
            if spec.name in resolved:
                raise UsageError(f"two adapters of one world are named {spec.name}")
            slots = spec.connection_slots if spec.connection_slots is not None else default_slots
            if slots is not None and slots < 1:
                raise UsageError(f"connection_slots must be at least 1, got {slots}")
            address = (spec.address or f"{ADAPTER_ADDRESS[:-2]}{index + 1:02X}").upper()
            try:
                hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS)
            except (ValueError, TypeError) as exc:
                raise UsageError(f"adapter {spec.name}: not an address: {address!r}") from exc
            resolved[spec.name] = AdapterSpec(spec.name, address, slots)
        addresses = [s.address for s in resolved.values()]
        if len(set(addresses)) != len(addresses):
            raise UsageError("two adapters of one world have the same address")
        return resolved

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> SimWorld:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the link, the adapter and every speaker; start advertising."""
        if self._loop is not None:
            raise UsageError("this SimWorld was already started; create one world per test")
        self._loop = asyncio.get_running_loop()
        self._tasks_before = asyncio.all_tasks()
        self.link = SimLink()
        try:
            self._started = True
            for name in self._adapter_specs:
                await self._plug(name)
            for spec in self._specs:
                self.speakers.append(SimSpeaker(self, spec))
            gate = asyncio.Semaphore(_START_CONCURRENCY)

            async def start_one(speaker: SimSpeaker) -> None:
                async with gate:
                    await speaker.start(stagger=True)

            await asyncio.gather(*(start_one(s) for s in self.speakers))
        except BaseException:
            await self.close()
            raise
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def close(self) -> None:
        """Stop everything; the world cannot be started again."""
        if self._closed:
            return
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for adapter in list(self._adapters.values()):
            await adapter.close()
        for speaker in list(self.speakers):
            await speaker.close()
        await self._cancel_bumble_tasks()

    async def _cancel_bumble_tasks(self) -> None:
        """Cancel and await the tasks bumble started for this world and left running.

        bumble runs GATT handlers (one still sleeping out a fault's response delay), advertising
        restarts and the like in fire-and-forget tasks; left alone they run on after close and
        log "connection not found". bumble keeps no owner for them, so every bumble task this
        loop started since :meth:`start` is taken as this world's (one world per test). bumble's
        long-lived work-queue pumps are left alone: cancelling one would stop its queue for good.
        """
        for _ in range(_CLOSE_ROUNDS):
            leftovers = [
                task
                for task in asyncio.all_tasks() - self._tasks_before
                if not task.done() and _is_bumble_task(task)
            ]
            if not leftovers:
                return
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
        _LOGGER.debug("bumble tasks kept starting while the world closed")

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.tick_s)
            now = loop.time()
            elapsed, last = now - last, now
            for speaker in list(self.speakers):
                plan = speaker.faults
                if plan.battery_drain_per_min or plan.rssi_drift_db_per_s:
                    try:
                        await speaker.tick(elapsed)
                    except Exception:
                        _LOGGER.exception("%s: tick failed", speaker.name)

    # --- access -----------------------------------------------------------------------------

    @property
    def backend(self) -> BleBackend:
        """The bleak backend classes bound to this world (pass them as ``backend=``)."""
        return self._backend

    @property
    def adapter_address(self) -> str:
        """The address of the world's first adapter."""
        return self.adapter_spec(next(iter(self._adapter_specs))).address or ADAPTER_ADDRESS

    @property
    def adapter_names(self) -> list[str]:
        """The names of the adapters plugged in now, in the order given."""
        return [name for name in self._adapter_specs if name in self._adapters]

    def adapter_spec(self, name: str) -> AdapterSpec:
        """The adapter named ``name`` (plugged in or not), with its address and slots.

        Raises:
            UsageError: The world has no adapter of that name.
        """
        spec = self._adapter_specs.get(name)
        if spec is None:
            raise UsageError(f"this world has no adapter {name!r}")
        return spec

    async def _plug(self, name: str) -> None:
        spec = self._adapter_specs[name]
        assert spec.address is not None
        adapter = _Adapter(self, name, spec.address, spec.connection_slots)
        self._adapters[name] = adapter
        try:
            await adapter.start()
        except BaseException:
            adapter.unplug()
            del self._adapters[name]
            raise

    async def unplug_adapter(self, name: str) -> None:
        """Remove an adapter, as unplugging a USB dongle does (BlueZ: its object disappears).

        Its connections drop on both sides (reason 0x08: every client's disconnected callback
        fires); its scanners hear nothing more; a scan or connect that selects it, or a
        ``BLEDevice`` it saw, fails as on BlueZ (``BleakError("adapter 'hci1' not found")``,
        ``BleakError("device 'dev_…' not found")``).
        """
        self._check_running()
        self.adapter_spec(name)
        adapter = self._adapters.pop(name, None)
        if adapter is None:
            raise UsageError(f"adapter {name} is not plugged in")
        adapter.unplug()

    async def plug_adapter(self, name: str) -> None:
        """Plug an adapter in again (same name, address and slots; no connections)."""
        self._check_running()
        self.adapter_spec(name)
        if name in self._adapters:
            raise UsageError(f"adapter {name} is plugged in already")
        await self._plug(name)

    def _check_running(self) -> None:
        """Check the world runs, in the caller's event loop."""
        if self._closed:
            raise AdapterUnavailable(
                "this SimWorld is closed",
                remedy="use the backend inside 'async with SimWorld(...)'; a closed world "
                "cannot be started again, so create a new one",
            )
        if not self._started:
            raise AdapterUnavailable(
                "this SimWorld is not started",
                remedy="use the backend inside 'async with SimWorld(...)' (or after start())",
            )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not self._loop:
            raise UsageError(
                "this SimWorld belongs to another event loop; create one world per test, "
                "inside the test's loop"
            )

    def _running_adapter(self, name: str | None = None) -> _Adapter:
        """The adapter ``name`` (default: the first present), checking the world runs here.

        Raises:
            BleakError: No adapter of that name is present (BlueZ: ``adapter 'hci9' not found``).
            BleakBluetoothNotAvailableError: No adapter is present at all (the default asked).
        """
        self._check_running()
        if name is None:
            for adapter in self._adapters.values():
                return adapter
            raise BleakBluetoothNotAvailableError(
                "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
            )
        found = self._adapters.get(name)
        if found is None:
            raise adapter_not_found(name)
        return found

    def _adapter_or_none(self, name: str | None = None) -> _Adapter | None:
        """The adapter if the world is running and it is present, else ``None``."""
        if self._closed:
            return None
        if name is None:
            return next(iter(self._adapters.values()), None)
        return self._adapters.get(name)

    def connected_on(self, adapter: str | None = None) -> list[str] | None:
        """Addresses of every device connected on ``adapter`` (default: the first), by anyone.

        Returns:
            Upper-case addresses; ``None`` when the adapter is not present.
        """
        found = self._adapter_or_none(adapter)
        if found is None:
            return None
        return [address_string(peer) for peer in found.connected_peers()]

    def speaker(self, address: str) -> SimSpeaker:
        """The speaker with this address.

        Raises:
            DeviceNotFound: No such speaker in this world.
        """
        found = self.speaker_or_none(address)
        if found is None:
            raise DeviceNotFound(f"no simulated speaker {address}", address=address)
        return found

    def speaker_or_none(self, address: str) -> SimSpeaker | None:
        """The speaker with this address, or ``None``."""
        wanted = address.upper()
        return next((s for s in self.speakers if s.address.upper() == wanted), None)

    async def add_speaker(self, spec: SpeakerSpec | None = None) -> SimSpeaker:
        """Add and start a speaker while the world runs.

        Args:
            spec: The speaker; ``None`` adds the next fleet index.
        """
        self._check_running()
        if spec is None:
            spec = SpeakerSpec.for_index(len(self.speakers) + 1)
        if self.speaker_or_none(spec.address) is not None:
            raise UsageError(f"a speaker {spec.address} is already in this world")
        speaker = SimSpeaker(self, spec)
        self.speakers.append(speaker)
        await speaker.start()
        return speaker

    async def remove_speaker(self, speaker: SimSpeaker | str) -> None:
        """Remove a speaker: it leaves the link (an open connection drops with reason 0x08)."""
        target = self.speaker(speaker) if isinstance(speaker, str) else speaker
        self.speakers.remove(target)
        await target.close()

    def connected_devices(self, adapter: str | None = None) -> list[BLEDevice]:
        """Bleak ``BLEDevice``s of the speakers ``adapter`` (default: the first) is connected to."""
        found = self._adapter_or_none(adapter)
        if found is None:
            return []
        peers = {bytes(peer.address_bytes) for peer in found.connected_peers()}
        return [
            BLEDevice(s.address, s.name, SimDeviceDetails(s.bumble_address, id(self), found.name))
            for s in self.speakers
            if bytes(s.bumble_address.address_bytes) in peers
        ]

    async def disconnect_device(self, address: str, adapter: str | None = None) -> bool:
        """Drop ``adapter``'s connection to ``address``, whoever made it (a stale connection).

        Returns:
            Whether there was one.
        """
        found = self._adapter_or_none(adapter)
        target = self.speaker_or_none(address)
        if found is None or target is None:
            return False
        dropped = False
        for connection in list(found.device.connections.values()):
            if connection.peer_address == target.bumble_address:
                await connection.disconnect()
                dropped = True
        return dropped

    def drop_reach(self, speaker: SimSpeaker, adapter: str) -> None:
        """Drop ``adapter``'s connection to ``speaker`` as if it went out of range (0x08)."""
        found = self._adapter_or_none(adapter)
        if found is not None:
            self.link.drop_connection(found.controller, speaker.bumble_address, CONNECTION_TIMEOUT)

    # --- third-party code -------------------------------------------------------------------

    @contextlib.contextmanager
    def patch_bleak(self) -> Iterator[BleBackend]:
        """Make bleak's platform default backend this world, for code that passes no backend.

        Patches ``bleak.get_platform_scanner_backend_type``, ``..._client_...`` and
        ``..._adapter_...`` on the ``bleak`` module (bleak calls its own imported names;
        patching ``bleak.backends.*`` would do nothing). Prefer ``backend=`` in our own code.

        Yields:
            This world's backend.
        """
        import bleak  # noqa: PLC0415 - patched in place, restored on exit

        backend = self._backend
        scanner, client = backend.scanner, backend.client
        assert scanner is not None
        assert client is not None
        adapter_cls = backend.adapter
        assert adapter_cls is not None
        names = (
            "get_platform_scanner_backend_type",
            "get_platform_client_backend_type",
            "get_platform_adapter_backend_type",
        )
        saved = {name: getattr(bleak, name) for name in names}
        replacements = {
            names[0]: lambda: (scanner, scanner.__name__),
            names[1]: lambda: (client, client.__name__),
            names[2]: lambda: (adapter_cls, adapter_cls.__name__),
        }
        for name, value in replacements.items():
            setattr(bleak, name, value)
        try:
            yield backend
        finally:
            for name, value in saved.items():
                setattr(bleak, name, value)


class _SimBleakAdapter(BaseBleakAdapter):
    """bleak adapter backend (``BleakAdapter``) for a world, installed by ``patch_bleak``.

    ``BleakAdapter.get(bluez={"adapter": "hci1"})`` selects an adapter (default: the first
    present), as bleak's BlueZ backend does.
    """

    _world: ClassVar[SimWorld]

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    @classmethod
    async def get(cls, **kwargs: Any) -> _SimBleakAdapter:
        bluez = kwargs.get("bluez") or {}
        name = bluez.get("adapter")
        if name is None:
            name = cls._world._running_adapter().name
        return cls(name)

    async def get_connected_devices(self, service_uuids: frozenset[str]) -> list[BLEDevice]:
        del service_uuids  # every simulated speaker has the services a caller filters on
        return self._world.connected_devices(self.name)

    async def disconnect_device(self, device: BLEDevice) -> None:
        """Drop the adapter's connection to ``device`` (BlueZ: ``Device1.Disconnect``).

        Not bleak API: what :func:`wking_device.ble._adapters.close_stale_connections` calls on
        an adapter backend that offers it; every client of the link sees the disconnection.
        """
        await self._world.disconnect_device(device.address, self.name)

    async def connection_state(self) -> tuple[int | None, list[str]] | None:
        """The adapter's slot count and every address connected on it (whoever connected it).

        Not bleak API: what :func:`wking_device.ble.adapter_slots` reads where an adapter
        backend offers it (on BlueZ the library reads BlueZ's object manager instead).

        Returns:
            ``(connection_slots, addresses)``; ``None`` when the adapter is not present.
        """
        connected = self._world.connected_on(self.name)
        if connected is None:
            return None
        spec = self._world.adapter_spec(self.name) if self.name else None
        return (spec.connection_slots if spec is not None else None), connected


def _bind_world_for_type_hints() -> None:
    """Give the modules this one imports the name ``SimWorld`` their annotations use.

    They cannot import it themselves (this module imports them), so until now
    ``typing.get_type_hints`` raised ``NameError`` on their classes; the package's lazy
    ``__getattr__`` loads this module before any of them is handed out.
    """
    for name in ("_client", "_scanner", "_speaker"):
        vars(sys.modules[f"wking_device.sim.{name}"]).setdefault("SimWorld", SimWorld)


_bind_world_for_type_hints()
