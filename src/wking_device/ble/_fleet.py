"""Reading many speakers at once, under the connection limit, one failure not stopping the rest.

This module owns :func:`read_all` and its :class:`FleetResult`, used by the agent and the fleet
benchmark. Each speaker gets its own :class:`~wking_device.ble.Speaker` session (connect, read
info, disconnect); at most ``limit`` are connected at once. It does not scan (pass the
results of :func:`~wking_device.ble.discover`) and does not retry beyond what each session does.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from wking_device.ble._backend import BleBackend
from wking_device.ble._discovery import SpeakerScanner
from wking_device.ble._events import EventBus
from wking_device.ble._limiter import ConnectionLimiter, limiter_for
from wking_device.ble._speaker import Speaker
from wking_device.ble._translate import RetryPolicy
from wking_device.ble._values import SpeakerTarget
from wking_device.config import BleSettings
from wking_device.errors import BluetoothError, DeviceNotFound
from wking_device.models import DeviceInfo
from wking_device.protocol import WKING_V1, DeviceProfile

__all__ = ["FleetResult", "read_all"]

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class FleetResult:
    """What :func:`read_all` got from each speaker.

    Attributes:
        infos: Address -> information, for the speakers that answered.
        errors: Address -> the typed error, for those that did not.
        peak_connections: The most connections open at once while reading.
        duration_s: Wall time of the whole read.
    """

    infos: dict[str, DeviceInfo] = field(default_factory=dict)
    errors: dict[str, BluetoothError] = field(default_factory=dict)
    peak_connections: int = 0
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every speaker answered."""
        return not self.errors


def _address_of(target: SpeakerTarget) -> str:
    return target if isinstance(target, str) else target.address


async def read_all(  # noqa: PLR0915 - one flat flow: limiter, sessions, results
    speakers: Iterable[SpeakerTarget],
    *,
    backend: BleBackend | None = None,
    limit: int | None = None,
    profile: DeviceProfile = WKING_V1,
    events: EventBus | None = None,
    settings: BleSettings | None = None,
    retry: RetryPolicy | None = None,
    read: Callable[[Speaker], Awaitable[DeviceInfo]] | None = None,
    on_result: Callable[[str, DeviceInfo | BluetoothError], None] | None = None,
    adapters: Sequence[str] | None = None,
) -> FleetResult:
    """Connect to each speaker, read its information, disconnect; concurrently, under a limit.

    A speaker that fails (not found, connection failed, timed out, disconnected) is recorded in
    :attr:`FleetResult.errors` and the others carry on. A cancellation of the caller cancels all
    and propagates.

    Args:
        speakers: Discovery results, ``BLEDevice`` objects or addresses.
        backend: The bleak backend pair; ``None`` for the platform default.
        limit: Connections open at once; defaults to ``settings.max_connections``. With no
            explicit limit the adapter's shared limiter is used, so other sessions count too,
            and a speaker waits for a slot at most ``settings.slot_timeout`` while none is
            granted or given back (then it is recorded as
            :class:`~wking_device.errors.ConnectionFailed`, reason
            ``TOO_MANY_CONNECTIONS``); the queue of this read moving restarts the wait. With
            ``limit``, the limiter is this read's own and its speakers wait for their turn
            without that bound (only these sessions, each bounded, hold its slots).
        profile: The vendor profile.
        events: The operation-event bus; defaults to the process-wide bus.
        settings: Timeouts, attempts and the default limit.
        retry: Connection attempts and backoff for each session.
        read: What to do with each connected speaker (default :meth:`Speaker.read_info`).
        on_result: Called as each speaker finishes (progress display).
        adapters: Several adapters to read through (``Speaker(adapters=...)``): each speaker
            connects through the adapter with a free slot and the best RSSI. With no explicit
            ``limit``, each adapter's shared limiter applies. Default: ``settings.adapters``.

    Returns:
        Per-speaker results and errors.
    """
    settings = settings or BleSettings()
    if adapters is None and settings.adapters:
        adapters = settings.adapters  # `[ble] adapters` in config.toml
    loop = asyncio.get_running_loop()
    started = loop.time()
    limiter: ConnectionLimiter = (
        ConnectionLimiter(limit)
        if limit is not None
        else limiter_for(backend, settings.max_connections, adapter=settings.adapter)
    )
    per_adapter = adapters is not None and limit is None  # each adapter's own limiter
    baseline_peak = limiter.peak
    limiter.reset_peak()
    open_now = 0
    open_peak = 0
    reader = read or (lambda speaker: speaker.read_info())
    result = FleetResult()

    async def one(target: SpeakerTarget) -> None:
        address = _address_of(target)
        outcome: DeviceInfo | BluetoothError
        try:
            async with Speaker(
                target,
                backend=backend,
                profile=profile,
                events=events,
                settings=settings,
                limiter=None if per_adapter else limiter,
                retry=retry,
                adapters=adapters,
                # its own limiter is held only by these sessions, each bounded: no bound needed
                slot_timeout=math.inf if limit is not None else None,
            ) as speaker:
                nonlocal open_now, open_peak
                open_now += 1
                open_peak = max(open_peak, open_now)
                try:
                    outcome = await reader(speaker)
                finally:
                    open_now -= 1
        except BluetoothError as exc:
            _LOGGER.debug("reading %s failed: %s", address, exc)
            outcome = exc
            result.errors[address] = exc
        else:
            result.infos[address] = outcome
        report(address, outcome)

    def report(address: str, outcome: DeviceInfo | BluetoothError) -> None:
        if on_result is not None:
            try:
                on_result(address, outcome)
            except Exception:
                _LOGGER.exception("read_all on_result callback raised")

    targets = list(speakers)
    seen: set[str] = set()
    unique: list[SpeakerTarget] = []
    for target in targets:
        key = _address_of(target).upper()
        if key not in seen:
            seen.add(key)
            unique.append(target)
    try:
        unique = await _find_addresses(
            unique, backend=backend, profile=profile, events=events, settings=settings
        )
        for missing in [t for t in unique if isinstance(t, str)]:
            error = DeviceNotFound(
                f"{missing} did not advertise within {settings.scan_timeout:g} s", address=missing
            )
            result.errors[missing] = error
            report(missing, error)
        unique = [t for t in unique if not isinstance(t, str)]
        async with asyncio.TaskGroup() as group:
            for target in unique:
                group.create_task(one(target))
    finally:
        result.peak_connections = open_peak if per_adapter else limiter.peak
        limiter.peak = max(baseline_peak, limiter.peak)
        result.duration_s = loop.time() - started
    return result


async def _find_addresses(
    targets: list[SpeakerTarget],
    *,
    backend: BleBackend | None,
    profile: DeviceProfile,
    events: EventBus | None,
    settings: BleSettings,
) -> list[SpeakerTarget]:
    """Resolve plain addresses with one shared scan instead of one scan per session.

    Addresses that do not advertise in time stay strings (reported as not found).
    """
    wanted = {t.upper() for t in targets if isinstance(t, str)}
    if not wanted:
        return targets
    async with SpeakerScanner(
        backend=backend,
        profile=profile,
        events=events,
        addresses=wanted,
        adapter=settings.adapter,
    ) as scanner:
        await scanner.wait_for(len(wanted), settings.scan_timeout)
    found = scanner.speakers
    return [found.get(t.upper(), t) if isinstance(t, str) else t for t in targets]
