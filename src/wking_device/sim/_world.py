"""The simulated world: one in-process link, one host adapter, N speakers, and bleak backends.

This module owns :class:`SimWorld` (the async context manager tests and ``wking --simulate N``
use), the world's adapter (a bumble central shared by every bleak scanner and client of the
world, like one real adapter), the per-world bleak backend classes and the patching of bleak's
platform backend getters for third-party code. It does not implement speakers
(:mod:`wking_device.sim._speaker`) or the bumble workarounds (:mod:`wking_device.sim._stack`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import bumble
from bleak.backends.adapter import BaseBleakAdapter
from bleak.backends.device import BLEDevice
from bumble import hci
from bumble.device import Device

from wking_device.ble._backend import BleBackend
from wking_device.errors import AdapterUnavailable, DeviceNotFound, UsageError
from wking_device.sim._client import SimClient
from wking_device.sim._scanner import SimDeviceDetails, SimScanner
from wking_device.sim._speaker import SimSpeaker
from wking_device.sim._spec import SpeakerSpec
from wking_device.sim._stack import SimController, SimHost, SimLink

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from types import TracebackType

    from bumble.device import Advertisement

    from wking_device.sim._faults import FaultPlan

__all__ = ["ADAPTER_ADDRESS", "SimWorld"]

_LOGGER = logging.getLogger(__name__)

#: The world adapter's random static address.
ADAPTER_ADDRESS = "F0:57:4B:AD:00:01"
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


class _Adapter:
    """The world's host adapter: a bumble central that scanners and clients share."""

    def __init__(self, world: SimWorld) -> None:
        address = hci.Address(ADAPTER_ADDRESS, hci.Address.RANDOM_DEVICE_ADDRESS)
        self.controller = SimController("adapter", world.link, address)
        self.controller.instant_connect = world.instant_connect
        host = SimHost(controller_source=self.controller, controller_sink=self.controller)
        self.device = Device(name="wking-sim-adapter", address=address, host=host)
        self.connect_lock = asyncio.Lock()
        self._scan_lock = asyncio.Lock()
        self._scanners: dict[int, SimScanner] = {}
        self._scan_active: bool | None = None
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

    async def close(self) -> None:
        self._scanners.clear()
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
        connection_slots: How many connections the adapter's controller holds at once (``None``:
            no limit). A connect beyond it fails as BlueZ reports a controller's Connection Limit
            Exceeded: ``BleakDBusError("org.bluez.Error.Failed",
            "le-connection-concurrent-connection-limit")``.
    """

    def __init__(
        self,
        specs: Iterable[SpeakerSpec] = (),
        *,
        instant_connect: bool = False,
        tick_s: float = 0.5,
        connection_slots: int | None = None,
    ) -> None:
        if connection_slots is not None and connection_slots < 1:
            raise UsageError(f"connection_slots must be at least 1, got {connection_slots}")
        self.connection_slots = connection_slots
        self._specs = list(specs)
        addresses = [s.address.upper() for s in self._specs]
        if len(set(addresses)) != len(addresses):
            raise UsageError("two speakers of one world have the same address")
        self.instant_connect = instant_connect
        self.tick_s = tick_s
        self.link: SimLink
        self.speakers: list[SimSpeaker] = []
        self._adapter: _Adapter | None = None
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
        )

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
            self._adapter = _Adapter(self)
            await self._adapter.start()
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
        if self._adapter is not None:
            await self._adapter.close()
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
        """The address of the world's host adapter."""
        return ADAPTER_ADDRESS

    def _running_adapter(self) -> _Adapter:
        """The adapter, checking the world runs in the caller's event loop."""
        if self._closed:
            raise AdapterUnavailable(
                "this SimWorld is closed",
                remedy="use the backend inside 'async with SimWorld(...)'; a closed world "
                "cannot be started again, so create a new one",
            )
        if self._adapter is None:
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
        return self._adapter

    def _adapter_or_none(self) -> _Adapter | None:
        """The adapter if the world is running, else ``None``."""
        return None if self._closed else self._adapter

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
        self._running_adapter()
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

    def connected_devices(self) -> list[BLEDevice]:
        """Bleak ``BLEDevice``s of the speakers the adapter is connected to."""
        adapter = self._adapter_or_none()
        if adapter is None:
            return []
        return [
            BLEDevice(s.address, s.name, SimDeviceDetails(s.bumble_address, id(self)))
            for s in self.speakers
            if s.connected
        ]

    async def disconnect_device(self, address: str) -> bool:
        """Drop the adapter's connection to ``address``, whoever made it (a stale connection).

        Returns:
            Whether there was one.
        """
        adapter = self._adapter_or_none()
        target = self.speaker_or_none(address)
        if adapter is None or target is None:
            return False
        dropped = False
        for connection in list(adapter.device.connections.values()):
            if connection.peer_address == target.bumble_address:
                await connection.disconnect()
                dropped = True
        return dropped

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
    """bleak adapter backend (``BleakAdapter``) for a world, installed by ``patch_bleak``."""

    _world: ClassVar[SimWorld]

    @classmethod
    async def get(cls, **kwargs: Any) -> _SimBleakAdapter:
        del kwargs
        return cls()

    async def get_connected_devices(self, service_uuids: frozenset[str]) -> list[BLEDevice]:
        del service_uuids  # every simulated speaker has the services a caller filters on
        return self._world.connected_devices()

    async def disconnect_device(self, device: BLEDevice) -> None:
        """Drop the adapter's connection to ``device`` (BlueZ: ``Device1.Disconnect``).

        Not bleak API: what :func:`wking_device.ble._adapters.close_stale_connections` calls on
        an adapter backend that offers it; every client of the link sees the disconnection.
        """
        await self._world.disconnect_device(device.address)
