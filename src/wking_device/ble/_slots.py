"""A speaker session's adapter choice and connection slot.

This module owns :class:`SpeakerSlots`, the base of :class:`~wking_device.ble.Speaker` between
its notifications (:class:`~wking_device.ble._notifications.SpeakerNotifications`) and its
connection life cycle (:class:`~wking_device.ble._connection.SpeakerLink`): with several
adapters, looking for the address on every one at once and choosing the one to connect through
(free slots first, then RSSI, see :func:`~wking_device.ble._adapters.pick_adapter`); taking the
connection slot of the adapter's :class:`~wking_device.ble.ConnectionLimiter` (bounded by
``slot_timeout`` on a first connect, by a reconnect's deadline alone otherwise; when several
adapters heard the address, the first slot freed on any of them); the error of a first connect
that found every slot taken, naming who holds them; and giving the slot back. It does not
connect, retry, reconnect or tear the link down, and does not declare the session's state (see
:mod:`._connection`, whose ``_connect`` calls these steps); it decodes and sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from wking_device.ble._adapters import AdapterCandidate, pick_adapter
from wking_device.ble._connection import SpeakerLink
from wking_device.ble._discovery import find_speaker
from wking_device.ble._limiter import acquire_first, limiter_for
from wking_device.errors import BluetoothError, BluetoothReason, ConnectionFailed, DeviceNotFound

if TYPE_CHECKING:
    from wking_device.ble._discovery import DiscoveredSpeaker
    from wking_device.ble._limiter import ConnectionLimiter

__all__ = ["SpeakerSlots"]

_LOGGER = logging.getLogger(__name__)

_PICK_GRACE = 1.0
"""With several adapters: seconds the others may take to see the address after the first did."""


class SpeakerSlots(SpeakerLink):
    """The adapter choice and connection slot of a :class:`~wking_device.ble.Speaker` (a base).

    The state is declared by :class:`~wking_device.ble._connection.SpeakerLink` and initialised
    by ``Speaker.__init__``.
    """

    # --- adapter choice -------------------------------------------------------------------------

    async def _pick_adapter(self, deadline: float | None) -> None:
        """Look for the address on every adapter at once; take the best one (see the class).

        Raises:
            DeviceNotFound: No adapter saw the address.
        """
        assert self._adapters is not None
        self._heard = {}
        self._restoring = "scan"
        window = (
            self._scan_timeout if deadline is None else self._window(self._scan_timeout, deadline)
        )
        sightings = await self._sightings(self._adapters, window)
        if not sightings:
            raise DeviceNotFound(
                f"{self._address} did not advertise on any of {len(self._adapters)} adapters "
                f"within {window:g} s",
                address=self._address,
            )
        candidates = []
        for name, found in sightings.items():
            limiter = limiter_for(self._backend, self._settings.max_connections, adapter=name)
            free = await limiter.available()
            candidates.append(
                AdapterCandidate(name, found.rssi, free, limiter.active + limiter.foreign)
            )
        chosen = pick_adapter(candidates) or min(candidates, key=lambda c: (-c.rssi, c.adapter))
        previous = self.adapter if self.connections else None
        self._use_sighting(chosen.adapter, sightings[chosen.adapter])
        if self._own_limiter and not self._holding_slot:
            self._limiter = None  # the chosen adapter's shared limiter is taken next
            # Every adapter that heard it, preferred first (free slots, then RSSI): the slot
            # wait takes the first slot freed on any of them.
            rest = sorted(
                (c for c in candidates if c is not chosen),
                key=lambda c: (c.free <= 0, -c.rssi, c.connections, c.adapter),
            )
            self._heard = {c.adapter: sightings[c.adapter] for c in [chosen, *rest]}
        moved = previous is not None and previous != chosen.adapter
        (_LOGGER.info if moved else _LOGGER.debug)(
            "%s: connecting through %s (RSSI %d dBm, %d free slots; %d adapters saw it)%s",
            self._address,
            chosen.adapter,
            chosen.rssi,
            chosen.free,
            len(sightings),
            f", was {previous}" if moved else "",
        )
        self._restoring = "connect"

    def _use_sighting(self, adapter: str, found: DiscoveredSpeaker) -> None:
        """Connect through ``adapter``, with the device it saw."""
        self._adapter = adapter
        self._discovered = found
        self._device = found.device
        self._device_at = found.seen_at
        self._name = found.name or self._name
        self._model = found.model or self._model

    async def _sightings(self, adapters: list[str], window: float) -> dict[str, DiscoveredSpeaker]:
        """Scan every adapter for the address at once; what each saw.

        Scans end when every adapter saw the address, :data:`_PICK_GRACE` seconds after the
        first did, or after ``window`` seconds. An adapter whose scan fails (unplugged) is
        passed over.
        """
        sightings: dict[str, DiscoveredSpeaker] = {}
        seen = asyncio.Event()

        async def look(name: str) -> None:
            try:
                found = await find_speaker(
                    self._address,
                    timeout=window,
                    backend=self._backend,
                    profile=self._profile,
                    events=self._bus,
                    adapter=name,
                )
            except BluetoothError as exc:
                _LOGGER.debug("%s: not found on %s: %s", self._address, name, exc.message)
                return
            except Exception as exc:  # noqa: BLE001 - one adapter's failure passes it over
                _LOGGER.debug("%s: scanning on %s failed: %r", self._address, name, exc)
                return
            sightings[name] = found
            seen.set()

        tasks = [asyncio.create_task(look(name)) for name in adapters]
        try:
            everything: asyncio.Future[list[None]] = asyncio.gather(*tasks)
            first: asyncio.Future[Any] = asyncio.ensure_future(seen.wait())
            try:
                await asyncio.wait([everything, first], return_when=asyncio.FIRST_COMPLETED)
            finally:
                first.cancel()
            if not everything.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_PICK_GRACE):
                        await asyncio.shield(everything)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return sightings

    # --- the connection slot --------------------------------------------------------------------

    async def _acquire_slot(self, deadline: float | None = None) -> None:
        """Take a slot: bounded by ``slot_timeout``, or by a reconnect's ``deadline`` alone.

        Raises:
            ConnectionFailed: No slot within ``slot_timeout`` (a first connect).
        """
        if self._holding_slot:
            return
        self._restoring = "slot"  # what a reconnect's deadline would end (after a pick's scan)
        bound = self._slot_timeout if deadline is None else None
        if self._limiter is None and len(self._heard) > 1:
            await self._acquire_any_slot(bound)
            return
        if self._limiter is None:
            self._limiter = limiter_for(
                self._backend, self._settings.max_connections, adapter=self._adapter
            )
        limiter = self._limiter
        try:
            await limiter.acquire(self._address, timeout=bound)
        except TimeoutError:
            if bound is None:  # a caller's timeout (a reconnect's deadline): not ours to name
                raise
            raise self._no_slot({self._adapter: limiter}, bound) from None
        self._holding_slot = True

    async def _acquire_any_slot(self, bound: float | None) -> None:
        """Take the first slot free on any adapter that heard the address (several did).

        The adapters are tried in the order :meth:`_pick_adapter` preferred them; when none has
        a free slot, the wait stands in every one's queue and the first slot granted wins. The
        connection then goes through that adapter, with the device it saw.
        """
        by_name = {
            name: limiter_for(self._backend, self._settings.max_connections, adapter=name)
            for name in self._heard
        }
        try:
            winner = await acquire_first(list(by_name.values()), self._address, timeout=bound)
        except TimeoutError:
            if bound is None:  # a caller's timeout (a reconnect's deadline): not ours to name
                raise
            waited: dict[str | None, ConnectionLimiter] = dict(by_name.items())
            raise self._no_slot(waited, bound) from None
        self._limiter = winner
        self._holding_slot = True
        name = next(n for n, limiter in by_name.items() if limiter is winner)
        if name != self._adapter:
            # as a pick's own log: a reconnect's change of adapter at INFO
            (_LOGGER.info if self.connections else _LOGGER.debug)(
                "%s: a slot of %s came free first; connecting through it instead of %s",
                self._address,
                name,
                self._adapter,
            )
            self._use_sighting(name, self._heard[name])

    def _no_slot(
        self, limiters: dict[str | None, ConnectionLimiter], bound: float
    ) -> ConnectionFailed:
        """The error of a first connect that found every slot taken for ``bound`` seconds.

        Args:
            limiters: Adapter name (``None``: the default one) -> its limiter, every adapter
                waited on, in the order of preference.
            bound: The seconds waited while no queue moved.
        """

        def taken(limiter: ConnectionLimiter) -> str:
            slots = limiter.effective_limit
            lowered = (
                f" (the controller's limit; max_connections is {limiter.limit})"
                if slots < limiter.limit
                else ""
            )
            return (
                f"{slots} slots{lowered}, taken: {limiter.active} by sessions of this process, "
                f"{limiter.foreign} by other connections on the adapter"
            )

        if len(limiters) == 1:
            ((name, limiter),) = limiters.items()
            adapter = f"adapter {name}" if name else "the default adapter"
            held = taken(limiter)
        else:
            adapter = "adapters " + ", ".join(str(name) for name in limiters)
            held = "; ".join(f"{name}: {taken(limiter)}" for name, limiter in limiters.items())
        return ConnectionFailed(
            f"could not connect to {self._address}: no connection slot of {adapter} came free "
            f"within {bound:g} s; {held}",
            address=self._address,
            reason=BluetoothReason.TOO_MANY_CONNECTIONS,
            remedy=(
                "disconnect another speaker, raise max_connections if the adapter manages "
                "more, or wait longer with slot_timeout (BleSettings or Speaker)"
            ),
            cli_remedy=(
                "disconnect another speaker (or stop the program holding the adapter's "
                "connections), raise ble.max_connections if the adapter manages more, or "
                "raise ble.slot_timeout in config.toml"
            ),
        )

    def _release_slot(self) -> None:
        if self._holding_slot and self._limiter is not None:
            self._holding_slot = False
            self._limiter.release(self._address)
