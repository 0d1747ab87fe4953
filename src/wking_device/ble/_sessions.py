"""Persistent sessions: bound speakers kept connected and subscribed, reconnected with backoff.

This module owns :class:`SessionKeeper`: for each speaker it is asked to keep (at most ``slots``
of them), one :class:`~wking_device.ble.Speaker` session and one task that connects it, waits
for the link to go down, and connects it again after a backoff (bleak-retry-connector's table,
through :class:`~wking_device.ble.RetryPolicy`: longer when the adapter is out of slots; reset
after every successful connection). Every connection subscribes again to the speaker's vendor
events and standard battery notifications (the session's own set-up), so the speaker's state
changes, button presses and battery levels keep arriving as ``NOTIFY`` operation events on the
event bus — input for the operation-log collector, gated by its permit like every other event —
and as :meth:`Speaker.events() <wking_device.ble.Speaker.events>` of :meth:`SessionKeeper.session`.

Before every connection a kept session closes a stale connection to its speaker (one the
Bluetooth stack holds for another program, or for a process of ours that died), as
bleak-retry-connector does (:func:`~wking_device.ble.close_stale_connections`).

Slots: kept sessions take connection slots of the adapter's shared
:class:`~wking_device.ble.ConnectionLimiter` for as long as they are connected, so by default one
slot fewer than ``max_connections`` is kept, leaving one for speakers that are polled (connected,
read and disconnected, as :func:`~wking_device.ble.read_all` does). Speakers beyond ``slots`` are
not kept: the caller polls them.

It does not scan (give it discovery results), read anything on its own, or decide which speakers
may be kept (the agent asks it only for bound speakers, and closes everything when no permit
would keep what they say).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Iterable, Sequence

from wking_device.ble._backend import BleBackend
from wking_device.ble._discovery import DiscoveredSpeaker
from wking_device.ble._events import EventBus
from wking_device.ble._speaker import Speaker
from wking_device.ble._translate import RetryPolicy
from wking_device.config import BleSettings
from wking_device.errors import BluetoothError, UsageError
from wking_device.protocol import WKING_V1, DeviceProfile

__all__ = ["DEFAULT_BACKOFF", "SessionKeeper"]

_LOGGER = logging.getLogger(__name__)

DEFAULT_BACKOFF = RetryPolicy(attempts=1, base_delay=1.0, max_delay=60.0, out_of_slots_delay=10.0)
"""Reconnection backoff: 1 s doubling to 60 s (10 s when the adapter is out of slots), jittered."""


class _Kept:
    """One kept speaker: its session, the task that keeps it up, and its link-down signal."""

    __slots__ = (
        "counted",
        "down",
        "failures",
        "last_error",
        "reported",
        "settled",
        "speaker",
        "stopping",
        "task",
        "up",
    )

    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker
        self.down = asyncio.Event()
        self.settled = asyncio.Event()
        """Set once the first connection attempt succeeded or failed."""
        self.failures = 0
        self.last_error: BluetoothError | None = None
        self.reported: str | None = None
        """The unexpected failure last logged (logged again only when it changes)."""
        self.stopping = False
        """Let go: the task ends (also when a Bluetooth call swallowed its cancellation)."""
        self.task: asyncio.Task[None] | None = None
        self.up = False
        """The last connect of the keeping loop succeeded and its link has not gone down since."""
        self.counted = 1
        """The session's connections up to which reconnects were counted (the first is none)."""


class SessionKeeper:
    """Keeps up to ``slots`` speakers connected, subscribed and reconnected; the rest are polled.

    Example::

        async with SessionKeeper(backend=backend) as keeper:
            kept = await keeper.keep({s.address for s in found}, found)
            async with keeper.session(address).events() as events:
                async for event in events:
                    ...

    Args:
        backend: The bleak backend pair; ``None`` for the platform default.
        profile: The vendor profile.
        events: The operation-event bus the sessions report to (default: the process bus).
        settings: Timeouts, attempts, adapter and ``max_connections``.
        slots: Most speakers kept at once (default ``settings.max_connections - 1``: one slot
            is left for polling; 0 keeps none).
        backoff: Delays between reconnection attempts (``attempts`` is not used: a kept speaker
            is retried until it is let go).
        retry: Connection attempts and backoff within one reconnection (each session's own).
        adapters: Several adapters to keep sessions through (``Speaker(adapters=...)``): every
            connection goes through the adapter with a free slot and the best RSSI, and a
            session whose adapter disappears reconnects through another that sees the speaker.
            Default: ``settings.adapters``.

    Attributes:
        reconnects: Connections made again after a kept link went down.

    Raises:
        UsageError: ``slots`` is negative.
    """

    def __init__(
        self,
        *,
        backend: BleBackend | None = None,
        profile: DeviceProfile = WKING_V1,
        events: EventBus | None = None,
        settings: BleSettings | None = None,
        slots: int | None = None,
        backoff: RetryPolicy = DEFAULT_BACKOFF,
        retry: RetryPolicy | None = None,
        adapters: Sequence[str] | None = None,
    ) -> None:
        self._settings = settings or BleSettings()
        if adapters is None and self._settings.adapters:
            adapters = self._settings.adapters  # `[ble] adapters` in config.toml
        self._adapters = list(adapters) if adapters is not None else None
        if slots is None:
            slots = self._settings.max_connections - 1
        if slots < 0:
            raise UsageError(f"slots must be 0 or more, got {slots}")
        self.slots = slots
        self._backend = backend
        self._profile = profile
        self._events = events
        self._backoff = backoff
        self._retry = retry
        self._kept: dict[str, _Kept] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each ends
        self.reconnects = 0

    # --- what is kept ---------------------------------------------------------------------------

    @property
    def kept(self) -> set[str]:
        """Upper-case addresses of the speakers kept (connected or reconnecting)."""
        return set(self._kept)

    def session(self, address: str) -> Speaker:
        """The kept session of ``address`` (its :meth:`Speaker.events` survive reconnects).

        Raises:
            UsageError: ``address`` is not kept.
        """
        kept = self._kept.get(address.upper())
        if kept is None:
            raise UsageError(f"{address} is not kept connected")
        return kept.speaker

    def connected(self) -> set[str]:
        """Upper-case addresses of the kept speakers whose link is up and set up now.

        A session still setting up its connection (services, subscriptions) is not in it yet.
        """
        return {
            address for address, kept in self._kept.items() if kept.up and kept.speaker.is_connected
        }

    def adapter(self, address: str) -> str | None:
        """The adapter the kept speaker's current (or last) connection goes through.

        Raises:
            UsageError: ``address`` is not kept.
        """
        return self.session(address).adapter

    def last_error(self, address: str) -> BluetoothError | None:
        """Why the kept speaker's latest connection attempt failed (``None``: it did not)."""
        kept = self._kept.get(address.upper())
        return kept.last_error if kept is not None else None

    async def settled(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound is the API
        """Wait until every kept speaker's first connection attempt succeeded or failed.

        Args:
            timeout: Seconds to wait at most (then it returns all the same).
        """
        waits = [kept.settled.wait() for kept in self._kept.values() if not kept.settled.is_set()]
        if not waits:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*waits)

    # --- keeping ---------------------------------------------------------------------------------

    async def keep(
        self, wanted: Collection[str], found: Iterable[DiscoveredSpeaker] = ()
    ) -> set[str]:
        """Keep the speakers of ``wanted`` that fit in the slots; let the others go.

        A wanted speaker not kept yet starts a session only when it is among ``found`` (just
        seen advertising: a fresh ``BLEDevice``) and a slot is free, strongest signal first. A
        kept speaker no longer wanted is disconnected.

        Args:
            wanted: Addresses that may be kept (the bound speakers).
            found: This cycle's discovery results.

        Returns:
            The upper-case addresses kept; poll the others.

        Raises:
            UsageError: ``wanted`` is one address (a string), not a collection of them.
        """
        if isinstance(wanted, str | bytes):
            raise UsageError(
                "wanted must be a collection of addresses, not one string",
                remedy="wrap one address in a set: keeper.keep({address}, found)",
            )
        wanted_keys = {address.upper() for address in wanted}
        for address in [a for a in self._kept if a not in wanted_keys]:
            await self._let_go(address)
        candidates = sorted(
            (s for s in found if s.address.upper() in wanted_keys),
            key=lambda s: (-s.rssi, s.address),
        )
        for seen in candidates:
            if len(self._kept) >= self.slots:
                break
            if seen.address.upper() not in self._kept:
                self._start(seen)
        return self.kept

    def _start(self, seen: DiscoveredSpeaker) -> None:
        key = seen.address.upper()
        kept: _Kept

        def on_down(_speaker: Speaker) -> None:
            kept.up = False
            kept.down.set()

        speaker = Speaker(
            seen,
            backend=self._backend,
            profile=self._profile,
            events=self._events,
            settings=self._settings,
            retry=self._retry,
            disconnected_callback=on_down,
            close_stale=True,  # a connection left by another program would keep it silent
            adapters=self._adapters,
        )
        kept = _Kept(speaker)
        self._kept[key] = kept
        kept.task = asyncio.get_running_loop().create_task(
            self._keep_up(kept), name="wking-kept-session"
        )
        self._tasks.add(kept.task)
        kept.task.add_done_callback(self._tasks.discard)
        _LOGGER.debug("keeping %s connected", seen.address)

    async def _keep_up(self, kept: _Kept) -> None:
        """Keep one session up until let go; the session is disconnected when the task ends."""
        try:
            await self._reconnect_forever(kept)
        finally:
            await kept.speaker.disconnect()
            _LOGGER.debug("let %s go", kept.speaker.address)

    async def _reconnect_forever(self, kept: _Kept) -> None:
        """Connect, wait for the link to go down, back off, connect again; until let go."""
        speaker = kept.speaker
        while not kept.stopping:
            kept.down.clear()
            try:
                await speaker.connect()
            except BluetoothError as exc:
                kept.failures += 1
                kept.last_error = exc
                kept.settled.set()
                delay = self._backoff.delay(kept.failures, exc)
                _LOGGER.debug(
                    "kept session %s: %s; again in %.1f s", speaker.address, exc.message, delay
                )
                await asyncio.sleep(delay)
                continue
            except Exception as exc:  # a bug must not end the keeping: logged, retried later
                kept.failures += 1
                # the latest failure, not the Bluetooth error of an earlier attempt
                kept.last_error = BluetoothError(
                    f"connecting failed: unexpected {type(exc).__name__}"
                )
                kept.last_error.__cause__ = exc
                kept.settled.set()
                # one line per distinct failure (not one traceback per retry); the traceback
                # of each at DEBUG
                failure = f"{type(exc).__name__}: {exc}"
                if failure != kept.reported:
                    kept.reported = failure
                    _LOGGER.warning(
                        "kept session %s: unexpected %s; retried with backoff",
                        speaker.address,
                        failure,
                    )
                _LOGGER.debug("kept session %s: unexpected error", speaker.address, exc_info=True)
                await asyncio.sleep(self._backoff.delay(kept.failures))
                continue
            kept.failures = 0
            kept.reported = None
            kept.last_error = None
            kept.settled.set()
            # Every link of the session after its first is a reconnect (one that went down while
            # it was being set up too), as the session's own Connected(reconnect=True) says.
            self.reconnects += max(0, speaker.connections - kept.counted)
            kept.counted = max(kept.counted, speaker.connections)
            kept.up = speaker.is_connected
            if kept.stopping:  # let go while connecting (a cancellation lost in the stack)
                return
            await kept.down.wait()
            _LOGGER.debug("kept session %s: link down, reconnecting", speaker.address)
            await asyncio.sleep(self._backoff.delay(1))

    async def _let_go(self, address: str) -> None:
        kept = self._kept.pop(address, None)
        if kept is not None:  # not let go meanwhile by another keep() or aclose()
            await self._release([kept])

    @staticmethod
    async def _release(items: list[_Kept]) -> None:
        """Stop the sessions' tasks (each disconnects its speaker as it ends) and wait for them.

        A task whose Bluetooth call swallows the cancellation still ends, by itself, when that
        call returns; a caller that cannot wait cancels this wait (e.g. with a timeout).
        """
        tasks = set()
        for kept in items:
            kept.stopping = True
            if kept.task is not None:
                kept.task.cancel()
                tasks.add(kept.task)
        if tasks:
            # wait() rather than awaiting the tasks: a cancellation of the caller propagates
            await asyncio.wait(tasks)

    async def aclose(self) -> None:
        """Disconnect every kept speaker (idempotent)."""
        items = list(self._kept.values())
        self._kept.clear()
        await self._release(items)

    async def __aenter__(self) -> SessionKeeper:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
