"""Discovery: finding W-KING speakers (or one address) in advertisements.

This module owns :class:`DiscoveredSpeaker`, the streaming :class:`SpeakerScanner`, and the
one-shot helpers :func:`discover`, :func:`find_speaker` and :func:`find`. Advertisements are
matched through a :class:`~wking_device.protocol.DeviceProfile` (name prefix, vendor service UUID,
manufacturer data) and deduplicated by address, the latest RSSI winning. A scan on several adapters
runs one bleak scanner per adapter into the same table, keeping one sighting per address by
:meth:`SpeakerScanner.takes`'s rule. A malformed advertisement is skipped, counted and logged at
debug level; it never stops a scan.

It does not connect (see :mod:`._speaker`) and does not keep anything beyond the scanner's life.
Every scan emits one ``SCAN`` operation event per adapter it scans on when it stops (or fails
to start), with counts in ``detail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal

from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType

# Imported at run time (this package loads it anyway) so that
# typing.get_type_hints resolves the public annotations that name them.
from bleak.backends.device import BLEDevice  # noqa: TC002
from bleak.backends.scanner import AdvertisementData  # noqa: TC002
from bleak.exc import BleakError

from wking_device._redact import redact
from wking_device.ble._adapters import is_plain_adapter_name
from wking_device.ble._backend import BleBackend
from wking_device.ble._events import EventBus, OpTimer, get_event_bus
from wking_device.ble._translate import translate
from wking_device.errors import (
    AdapterUnavailable,
    BluetoothError,
    DeviceNotFound,
    InvalidAddress,
    ProtocolError,
    UnsupportedOperation,
    UsageError,
)
from wking_device.models import OperationKind
from wking_device.protocol import (
    MANUFACTURER_MAGIC,
    WKING_V1,
    DeviceProfile,
    WkingV1Profile,
    parse_manufacturer_data,
)

__all__ = [
    "DEFAULT_SCAN_TIMEOUT",
    "SIGHTING_STALE_S",
    "DiscoveredSpeaker",
    "SpeakerScanner",
    "discover",
    "find",
    "find_speaker",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_SCAN_TIMEOUT = 5.0
"""Seconds :func:`discover` scans when given no timeout (``Settings.ble.scan_timeout``)."""

SIGHTING_STALE_S = 5.0
"""Seconds after which a kept sighting gives way to another adapter's weaker one (see
:meth:`SpeakerScanner.takes`)."""

_UNAVAILABLE: set[tuple[BleBackend | None, str | None]] = set()
"""(backend, adapter) pairs whose last scan could not start in this process: warned about once,
then at DEBUG until a scan there starts again."""
_UNAVAILABLE_MAX = 64


def _unavailable(backend: BleBackend | None, adapter: str | None) -> None:
    """Remember that ``adapter`` could not scan (a bounded set: forgetting costs one warning)."""
    if len(_UNAVAILABLE) >= _UNAVAILABLE_MAX:
        _UNAVAILABLE.clear()
    _UNAVAILABLE.add((backend, adapter))


PASSIVE_OR_PATTERNS: tuple[OrPattern, ...] = (
    OrPattern(0, AdvertisementDataType.FLAGS, b"\x02"),
    OrPattern(0, AdvertisementDataType.FLAGS, b"\x06"),
    OrPattern(0, AdvertisementDataType.FLAGS, b"\x1a"),
)
"""Catch-all advertisement-monitor patterns for a passive scan on BlueZ (as habluetooth passes).

bleak's BlueZ backend scans passively only through an advertisement monitor and refuses a
passive scan without ``or_patterns``. These match an advertisement whose Flags start with
0x02 (LE General Discoverable), 0x06 (the same, BR/EDR not supported: W-KING speakers) or 0x1a
(the same, simultaneous LE and BR/EDR): the general-discoverable devices a scan looks for.
"""


def bluez_scanner_args(scanning_mode: str, adapter: str | None) -> BlueZScannerArgs:
    """The ``bluez=`` arguments of a scan: the adapter, and the patterns a passive scan needs."""
    args = BlueZScannerArgs()
    if adapter:
        args["adapter"] = adapter
    if scanning_mode == "passive":
        args["or_patterns"] = list(PASSIVE_OR_PATTERNS)
    return args


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class DiscoveredSpeaker:
    """A speaker seen in an advertisement.

    Attributes:
        address: The Bluetooth address (a UUID on macOS).
        name: The advertised local name, when one was seen (active scans only, it travels in the
            scan response).
        rssi: Signal strength of the latest advertisement, in dBm.
        model: The profile's model id, or ``None`` when the profile could not tell.
        address_type: ``"public"`` or ``"random"``, when the backend reports it.
        tx_power: Advertised TX power in dBm, when present.
        service_uuids: Advertised service UUIDs.
        adapter: The adapter that heard it, when the scan named one (``adapter=`` or
            ``adapters=``); ``None`` for the platform's default adapter. Its ``device``
            connects through that adapter.
        device: bleak's ``BLEDevice`` to connect with.
        seen_at: ``time.monotonic()`` of the latest advertisement.
    """

    address: str
    name: str | None
    rssi: int
    model: str | None = None
    address_type: str | None = None
    tx_power: int | None = None
    service_uuids: tuple[str, ...] = ()
    adapter: str | None = None
    device: BLEDevice = field(compare=False, repr=False)
    seen_at: float = field(default_factory=time.monotonic, compare=False, repr=False)

    @property
    def age(self) -> float:
        """Seconds since the latest advertisement."""
        return time.monotonic() - self.seen_at

    def __repr__(self) -> str:
        # A repr ends up in log lines and tracebacks: the address and MAC-shaped text in the
        # name (the speaker's to choose) are redacted; repr() escapes control characters.
        name = None if self.name is None else redact(self.name)
        return (
            f"DiscoveredSpeaker(address={redact(self.address)!r}, name={name!r}, "
            f"rssi={self.rssi!r}, model={self.model!r}, address_type={self.address_type!r}, "
            f"tx_power={self.tx_power!r}, service_uuids={self.service_uuids!r}, "
            f"adapter={self.adapter!r})"
        )


def _address_type(device: BLEDevice) -> str | None:
    """Best-effort address type from the backend's native details (BlueZ props, bumble)."""
    details: Any = device.details
    if isinstance(details, dict):
        props = details.get("props")
        if isinstance(props, dict):
            value = props.get("AddressType")
            return str(value) if value is not None else None
        return None
    # bumble's Address (directly, or wrapped as the simulator's details.address)
    for candidate in (details, getattr(details, "address", None)):
        is_public = getattr(candidate, "is_public", None)
        if isinstance(is_public, bool):
            return "public" if is_public else "random"
    return None


def _check_strictly(profile: DeviceProfile, adv: AdvertisementData) -> None:
    """Raise AdvertisementError for a W-KING advertisement whose vendor data is malformed.

    ``DeviceProfile.match`` is lenient by contract (it never raises, it just cannot tell the
    model); discovery wants malformed advertisements skipped and counted, so it checks the
    manufacturer data strictly. A profile may offer ``check_advertisement(adv)`` to do the same.
    """
    checker = getattr(profile, "check_advertisement", None)
    if callable(checker):
        checker(adv)
        return
    if isinstance(profile, WkingV1Profile):
        payload = adv.manufacturer_data.get(profile.company_id)
        if payload is not None and payload[:2] == MANUFACTURER_MAGIC:
            parse_manufacturer_data(payload)


class SpeakerScanner:
    """A running scan that collects matching speakers and can stream them as they appear.

    Example::

        async with SpeakerScanner(backend=backend) as scanner:
            async for speaker in scanner:
                seen[speaker.address] = speaker.rssi

    Args:
        backend: The bleak backend pair; ``None`` for the platform default.
        profile: Matches advertisements to models.
        events: The operation-event bus; defaults to the process-wide bus.
        addresses: When given, collect exactly these addresses (matched or not, so any BLE
            device can be found) and nothing else.
        on_speaker: Called with every new (or, with ``report_updates``, updated) speaker.
        report_updates: Also report a speaker again when a later advertisement changes it.
        on_advertisement: Called with every matching advertisement, repeats included (the
            :class:`~wking_device.ble.SpeakerTracker` learns advertising intervals from them).
            On several adapters, with the sighting kept for its address after each one, whichever
            adapter heard it.
        scanning_mode: ``"active"`` (names arrive in scan responses) or ``"passive"`` (on
            BlueZ through an advertisement monitor matching :data:`PASSIVE_OR_PATTERNS`, which
            bleak requires for a passive scan).
        adapter: The adapter to scan with (e.g. ``hci1``), passed to bleak's BlueZ backend;
            ``None`` for the default one. A ``BLEDevice`` found on one adapter connects through
            that adapter, so a session on another adapter must scan on its own.
        adapters: Several adapters to scan with at once (``[ble] adapters``), instead of
            ``adapter``; a name given twice scans once. Each runs its own bleak scanner into the
            same :attr:`speakers` and stream, one sighting kept per address (see :meth:`takes`).
            An adapter that cannot scan is passed over with one warning when the scan starts
            (later scans that cannot start on it log at DEBUG until one does).
        stale_after: Seconds after which a kept sighting gives way to another adapter's weaker
            one (only with ``adapters``).

    Attributes:
        speakers: The speakers seen so far, by address.
        adverts: Advertisements received (on every adapter).
        malformed: Advertisements skipped because the profile could not parse them.

    Raises:
        UsageError: ``adapters`` is empty, or given with ``adapter``.
    """

    def __init__(
        self,
        *,
        backend: BleBackend | None = None,
        profile: DeviceProfile = WKING_V1,
        events: EventBus | None = None,
        addresses: Collection[str] | None = None,
        on_speaker: Callable[[DiscoveredSpeaker], None] | None = None,
        report_updates: bool = False,
        scanning_mode: Literal["active", "passive"] = "active",
        adapter: str | None = None,
        on_advertisement: Callable[[DiscoveredSpeaker], None] | None = None,
        adapters: Sequence[str] | None = None,
        stale_after: float = SIGHTING_STALE_S,
    ) -> None:
        self._names: list[str | None]
        if adapters is not None:
            if adapter is not None:
                raise UsageError("give adapter or adapters, not both")
            self._names = list(dict.fromkeys(adapters))  # one scanner each, in the order given
            if not self._names:
                raise UsageError("adapters needs at least one adapter name")
        else:
            self._names = [adapter]
        self._several = adapters is not None
        self._stale_after = stale_after
        self._backend = backend
        self._on_advertisement = on_advertisement
        self._profile = profile
        self._bus = events if events is not None else get_event_bus()
        self._addresses = {a.upper() for a in addresses} if addresses is not None else None
        self._on_speaker = on_speaker
        self._report_updates = report_updates
        self._scanning_mode = scanning_mode
        self.speakers: dict[str, DiscoveredSpeaker] = {}
        self.adverts = 0
        self.malformed = 0
        # Created when a stream starts, so a scanner nobody iterates keeps no backlog.
        self._queues: list[asyncio.Queue[DiscoveredSpeaker | None]] = []
        self._running = False
        self._scans: list[_AdapterScan] = []
        self._kept_from: dict[str, str | None] = {}  # address -> adapter of the kept sighting
        self._changed = asyncio.Event()
        self._lifecycle = asyncio.Lock()
        """Held by start() and stop(): one at a time, each after the one called before."""

    # --- life cycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start scanning (on every adapter given).

        Raises:
            AdapterUnavailable: The backend cannot scan (no adapter, no BlueZ, powered off); with
                ``adapters``, on none of them.
            UnsupportedOperation: A passive scan the backend cannot do (CoreBluetooth never;
                BlueZ does, through an advertisement monitor with :data:`PASSIVE_OR_PATTERNS`).
        """
        async with self._lifecycle:  # a second start() meanwhile would start a second scan
            await self._start()

    async def _start(self) -> None:
        if self._running:
            return
        scans: list[_AdapterScan] = []
        first_error: BluetoothError | None = None
        try:
            for name in self._names:
                scan = _AdapterScan(name, self._bus, named=self._several)
                try:
                    await self._start_one(scan)
                except BluetoothError as error:
                    if not self._several:
                        raise
                    # once per adapter until it scans again (the agent scans every cycle);
                    # the name as repr: a caller's name never breaks the line
                    level = (
                        logging.DEBUG if (self._backend, name) in _UNAVAILABLE else logging.WARNING
                    )
                    _unavailable(self._backend, name)
                    _LOGGER.log(level, "cannot scan with %r: %s", name, error.message)
                    first_error = first_error or error
                    continue
                _UNAVAILABLE.discard((self._backend, name))
                scans.append(scan)
        except BaseException:
            for scan in scans:
                await scan.stop(ok=False)
            raise
        if not scans:
            assert first_error is not None
            raise first_error
        self._scans = scans
        self._running = True

    async def _start_one(self, scan: _AdapterScan) -> None:
        """Start ``scan``'s bleak scanner; its ``SCAN`` event fails with the typed error."""
        name = scan.adapter
        if name is not None and not is_plain_adapter_name(name):
            refused = AdapterUnavailable("not an adapter name")  # never handed to the stack
            scan.timer.fail(refused)
            raise refused
        constructed = False
        try:

            def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
                self._on_advert(device, adv, scan)

            # bleak's backends refuse some settings when constructed (BlueZ: a passive scan
            # without or_patterns; CoreBluetooth: any passive scan), so this is inside the try.
            scanner = BleakScanner(
                on_advert,
                scanning_mode=self._scanning_mode,
                bluez=bluez_scanner_args(self._scanning_mode, name),
                backend=self._backend.scanner if self._backend is not None else None,
            )
            constructed = True
            await scanner.start()
        except asyncio.CancelledError:
            scan.timer.fail(asyncio.CancelledError())
            raise
        except Exception as exc:
            error = translate(exc, address=None, operation="scan")
            if not constructed and self._scanning_mode == "passive" and isinstance(exc, BleakError):
                error = UnsupportedOperation(
                    f"passive scanning is not available here: {exc}",
                    remedy="scan actively (the default); passive scans need platform support",
                )
            elif not isinstance(error, AdapterUnavailable):
                error = AdapterUnavailable(f"cannot start scanning: {error.message}")
            scan.timer.fail(error)
            raise error from exc
        scan.scanner = scanner

    async def stop(self) -> None:
        """Stop scanning on every adapter (idempotent); emit the ``SCAN`` events, end any stream.

        Called while :meth:`start` is under way, it waits for it and then stops.
        """
        async with self._lifecycle:
            if not self._running:
                return
            self._running = False
            scans, self._scans = self._scans, []
            try:
                for scan in scans:
                    await scan.stop(ok=True)
            finally:
                for queue in self._queues:
                    queue.put_nowait(None)

    async def __aenter__(self) -> SpeakerScanner:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- results --------------------------------------------------------------------------------

    def found(self) -> list[DiscoveredSpeaker]:
        """The speakers seen so far, strongest signal first."""
        return sorted(self.speakers.values(), key=lambda s: (-s.rssi, s.address))

    def __aiter__(self) -> AsyncIterator[DiscoveredSpeaker]:
        """Stream speakers: those seen so far, then each new (or updated) one until stopped."""
        return self._stream()

    async def _stream(self) -> AsyncIterator[DiscoveredSpeaker]:
        """Yield the speakers seen so far, then each new one, until the scan stops."""
        queue: asyncio.Queue[DiscoveredSpeaker | None] = asyncio.Queue()
        for speaker in self.found():
            queue.put_nowait(speaker)
        if not self._running:
            queue.put_nowait(None)
        self._queues.append(queue)
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            self._queues.remove(queue)

    async def wait_for(self, count: int, timeout: float) -> bool:  # noqa: ASYNC109 - deadline is the API
        """Wait until ``count`` speakers were seen, or ``timeout`` seconds passed.

        Returns:
            Whether ``count`` speakers were seen.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while len(self.speakers) < count:
                    self._changed.clear()
                    await self._changed.wait()
        return len(self.speakers) >= count

    # --- advertisement handling -----------------------------------------------------------------

    def takes(
        self, address: str, adapter: str | None, rssi: int, *, now: float | None = None
    ) -> bool:
        """Whether an advertisement ``adapter`` heard replaces the sighting kept for ``address``.

        The rule for one address heard by several adapters: the sighting of the adapter that
        heard it last is kept while that adapter keeps hearing it (a new advertisement from it
        always replaces it, as on one adapter); another adapter's replaces it only when its RSSI
        is stronger, or when the kept one is older than ``stale_after`` (that adapter stopped
        hearing it). So the kept sighting is the strongest adapter's within one advertising
        interval of a change, as :func:`discover` and a connection's choice of adapter
        (:func:`~wking_device.ble.pick_adapter`) prefer, and its ``device`` always belongs to
        the adapter it came from.

        Args:
            address: The address, upper case.
            adapter: The adapter that heard the advertisement.
            rssi: Its RSSI, in dBm.
            now: ``time.monotonic()`` of the advertisement (default: now).
        """
        kept = self.speakers.get(address)
        if kept is None or self._kept_from.get(address) == adapter or rssi > kept.rssi:
            return True
        now = time.monotonic() if now is None else now
        return now - kept.seen_at >= self._stale_after

    def _on_advert(self, device: BLEDevice, adv: AdvertisementData, scan: _AdapterScan) -> None:
        self.adverts += 1
        scan.adverts += 1
        address = device.address.upper()
        wanted = self._addresses
        if wanted is not None and address not in wanted:
            return
        try:
            _check_strictly(self._profile, adv)
            model = self._profile.match(
                adv.local_name or device.name, adv.service_uuids, adv.manufacturer_data
            )
        except ProtocolError as exc:
            self.malformed += 1
            scan.malformed += 1
            _LOGGER.debug("skipped a malformed advertisement: %s", exc)
            return
        except Exception:  # a third-party profile must not stop a scan (DESIGN §9)
            self.malformed += 1
            scan.malformed += 1
            _LOGGER.debug("profile %r failed on an advertisement", self._profile, exc_info=True)
            return
        if model is None and wanted is None:
            return
        scan.heard.add(address)
        previous = self.speakers.get(address)
        if (
            previous is not None
            and self._several
            and not self.takes(address, scan.adapter, adv.rssi)
        ):
            self._advertised(previous)  # heard, by an adapter whose sighting is not kept
            return
        name = adv.local_name or device.name
        if name is None and previous is not None:
            name = previous.name
        speaker = DiscoveredSpeaker(
            address=device.address,
            name=name,
            rssi=adv.rssi,
            model=model if model is not None else (previous.model if previous else None),
            address_type=_address_type(device),
            tx_power=adv.tx_power,
            service_uuids=tuple(adv.service_uuids),
            adapter=scan.adapter,
            device=device,
        )
        self.speakers[address] = speaker
        if self._several:
            self._kept_from[address] = scan.adapter
        self._changed.set()
        self._advertised(speaker)
        if previous is None or (self._report_updates and speaker != previous):
            for queue in self._queues:
                queue.put_nowait(speaker)
            if self._on_speaker is not None:
                try:
                    self._on_speaker(speaker)
                except Exception:
                    _LOGGER.exception("on_speaker callback raised; scanning continues")

    def _advertised(self, speaker: DiscoveredSpeaker) -> None:
        if self._on_advertisement is not None:
            try:
                self._on_advertisement(speaker)
            except Exception:
                _LOGGER.exception("on_advertisement callback raised; scanning continues")


class _AdapterScan:
    """One adapter's bleak scanner within a :class:`SpeakerScanner`, with its ``SCAN`` event."""

    __slots__ = ("adapter", "adverts", "heard", "malformed", "scanner", "timer")

    def __init__(self, adapter: str | None, bus: EventBus, *, named: bool) -> None:
        self.adapter = adapter
        self.timer = OpTimer(bus, OperationKind.SCAN, detail={"adapter": adapter} if named else {})
        self.scanner: BleakScanner | None = None
        self.adverts = 0
        self.malformed = 0
        self.heard: set[str] = set()

    async def stop(self, *, ok: bool) -> None:
        """Stop the scanner; emit the event (``ok``: the scan ran, else it was abandoned)."""
        scanner, self.scanner = self.scanner, None
        try:
            if scanner is not None:
                await scanner.stop()
        except Exception:  # a failing stop must not hide what the scan found
            _LOGGER.debug("stopping the scanner failed", exc_info=True)
        finally:
            self.timer.detail.update(
                adverts=self.adverts, malformed=self.malformed, speakers=len(self.heard)
            )
            if ok:
                self.timer.ok()
            else:
                self.timer.fail(asyncio.CancelledError())


async def discover(
    timeout: float | None = None,  # noqa: ASYNC109 - a scan's duration is its API
    *,
    backend: BleBackend | None = None,
    profile: DeviceProfile = WKING_V1,
    events: EventBus | None = None,
    count: int | None = None,
    scanning_mode: Literal["active", "passive"] = "active",
    adapter: str | None = None,
    adapters: Sequence[str] | None = None,
) -> list[DiscoveredSpeaker]:
    """Scan for speakers and return them, strongest signal first.

    Args:
        timeout: Seconds to scan (default :data:`DEFAULT_SCAN_TIMEOUT`).
        backend: The bleak backend pair; ``None`` for the platform default.
        profile: Matches advertisements to models.
        events: The operation-event bus; defaults to the process-wide bus.
        count: Stop early once this many speakers were seen.
        scanning_mode: ``"active"`` or ``"passive"`` (passive scans see no names).
        adapter: The adapter to scan with (e.g. ``hci1``); ``None`` for the default one.
        adapters: Several adapters to scan with at once (``[ble] adapters``), instead of
            ``adapter``: a speaker any of them hears is found, with the sighting of the adapter
            that hears it best (:meth:`SpeakerScanner.takes`; its ``device`` connects through
            that adapter). An adapter that cannot scan (unplugged) is passed over with a
            warning while another scans.

    Returns:
        The speakers seen, deduplicated by address (latest RSSI).

    Raises:
        AdapterUnavailable: Scanning could not start (on any of ``adapters``).
        UnsupportedOperation: A passive scan the platform cannot do.
        UsageError: ``adapters`` is empty, or given with ``adapter``.
    """
    timeout = _scan_seconds(timeout)
    async with SpeakerScanner(
        backend=backend,
        profile=profile,
        events=events,
        scanning_mode=scanning_mode,
        adapter=adapter,
        adapters=adapters,
    ) as scanner:
        if count is None:
            await asyncio.sleep(timeout)
        else:
            await scanner.wait_for(count, timeout)
    return scanner.found()


_ADDRESS_RE: Final = re.compile(
    r"^(?:[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}"  # a MAC (BlueZ, Windows)
    r"|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$"  # macOS
)


def _check_address(address: object) -> None:
    """Refuse, before any scan, what cannot be an address (``Speaker`` does the same)."""
    if not isinstance(address, str):
        raise UsageError(f"address must be a str, not {type(address).__name__}")
    if not _ADDRESS_RE.match(address):
        raise InvalidAddress(address)


def _scan_seconds(timeout: object) -> float:
    """``timeout`` (``None``: the default) as seconds to scan: a finite number, 0 or more."""
    if timeout is None:
        return DEFAULT_SCAN_TIMEOUT
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 <= timeout < float("inf")
    ):
        raise UsageError(f"timeout must be a number of seconds (0 or more), not {timeout!r}")
    return float(timeout)


async def find_speaker(
    address: str,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - a scan's duration is its API
    backend: BleBackend | None = None,
    profile: DeviceProfile = WKING_V1,
    events: EventBus | None = None,
    adapter: str | None = None,
) -> DiscoveredSpeaker:
    """Scan until ``address`` advertises; any BLE device is accepted, W-KING or not.

    Args:
        address: The Bluetooth address (case-insensitive).
        timeout: Seconds to scan at most (default :data:`DEFAULT_SCAN_TIMEOUT`).
        backend: The bleak backend pair; ``None`` for the platform default.
        profile: Used to fill in the model when the device matches.
        events: The operation-event bus; defaults to the process-wide bus.
        adapter: The adapter to scan with (e.g. ``hci1``); ``None`` for the default one.

    Returns:
        A freshly seen speaker (``model`` is ``None`` for a foreign device).

    Raises:
        DeviceNotFound: The address did not advertise in time.
        AdapterUnavailable: Scanning could not start.
        InvalidAddress: ``address`` is not a Bluetooth address (refused before any scan).
        UsageError: ``address`` is not a string, or ``timeout`` not a number of seconds.
    """
    _check_address(address)
    timeout = _scan_seconds(timeout)
    async with SpeakerScanner(
        backend=backend, profile=profile, events=events, addresses=(address,), adapter=adapter
    ) as scanner:
        await scanner.wait_for(1, timeout)
    found = scanner.speakers.get(address.upper())
    if found is None:
        raise DeviceNotFound(f"{address} did not advertise within {timeout:g} s", address=address)
    return found


async def find(
    address: str,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - a scan's duration is its API
    backend: BleBackend | None = None,
    events: EventBus | None = None,
    adapter: str | None = None,
) -> BLEDevice:
    """Scan until ``address`` advertises and return a fresh ``BLEDevice`` for it.

    Args:
        address: The Bluetooth address (case-insensitive).
        timeout: Seconds to scan at most (default :data:`DEFAULT_SCAN_TIMEOUT`).
        backend: The bleak backend pair; ``None`` for the platform default.
        events: The operation-event bus; defaults to the process-wide bus.
        adapter: The adapter to scan with (e.g. ``hci1``); ``None`` for the default one.

    Raises:
        DeviceNotFound: The address did not advertise in time.
        AdapterUnavailable: Scanning could not start.
        InvalidAddress: ``address`` is not a Bluetooth address (refused before any scan).
        UsageError: ``address`` is not a string, or ``timeout`` not a number of seconds.
    """
    speaker = await find_speaker(
        address, timeout=timeout, backend=backend, events=events, adapter=adapter
    )
    return speaker.device
