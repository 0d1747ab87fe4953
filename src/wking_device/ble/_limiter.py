"""A limit on concurrent connections per adapter, counted against the adapter's real state.

This module owns :class:`ConnectionLimiter` (a counting gate that also measures how many
connections were open at once), :func:`acquire_first` (one wait in the queues of several
limiters, one per adapter: the first slot granted on any wins, and the wait is withdrawn from the
others at once) and the per-event-loop registry that gives every
:class:`~wking_device.ble.Speaker` on the same backend and adapter the same limiter. It does not
connect anything; a speaker holds a slot from its first connection attempt until it disconnects.

Real adapters manage 5-10 simultaneous LE connections; past that, BlueZ answers with
"le-connection-abort-by-local" or out-of-slots errors, which are slow to recover from. Waiting for
a slot is cheaper than failing. A shared limiter also reads the adapter's state
(:func:`~wking_device.ble.adapter_slots`) before granting a slot, as habluetooth's
``BleakSlotManager`` counts: a device connected on the adapter by another program (or another
limiter) takes a slot too, and a controller limit lower than the configured one wins. A wait
can be bounded by the time the queue stands still (``Settings.ble.slot_timeout`` for a
:class:`~wking_device.ble.Speaker`), so slots held for good do not hang a caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence

from wking_device.ble._adapters import AdapterSlots, adapter_slots
from wking_device.ble._backend import BleBackend
from wking_device.errors import UsageError

__all__ = ["ConnectionLimiter", "acquire_first", "limiter_for"]

_RECHECK_S = 0.5
"""While slots are taken by connections that are not ours, how often the adapter is read again
(such a connection ending sends us nothing)."""


class ConnectionLimiter:
    """At most ``limit`` connections at once; others wait for a slot (first come, first served).

    A wait may be bounded (``acquire(timeout=...)``): it fails with :class:`TimeoutError` once
    that long passed with no slot granted or given back, so a queue that moves is waited out
    however long it is, and one that does not (every slot held, by us or by another program)
    is not waited on forever.

    With a ``probe`` (the shared limiters of :func:`limiter_for` have one), a slot is granted
    only while ``limit - ours - foreign > 0``, where *foreign* counts the devices the adapter
    has connected that no holder of this limiter connected, and ``limit`` is lowered to the
    controller's own limit where the stack reports one. When the adapter's state is unknown, or
    the stack has no such adapter, only ``limit`` applies.

    Args:
        limit: The number of slots (``Settings.ble.max_connections``).
        probe: Reads the adapter's connections (see :func:`~wking_device.ble.adapter_slots`).

    Attributes:
        limit: The number of slots.
        active: Slots currently held.
        peak: The highest number of slots held at once since creation (or :meth:`reset_peak`).
        foreign: Connections on the adapter that are not ours, at the last reading.
    """

    def __init__(
        self,
        limit: int,
        *,
        probe: Callable[[], Awaitable[AdapterSlots | None]] | None = None,
    ) -> None:
        if limit < 1:
            raise UsageError(f"limit must be >= 1, not {limit}")
        self.limit = limit
        self.active = 0
        self.peak = 0
        self.foreign = 0
        self._probe = probe
        self._stack_limit: int | None = None
        self._holders: Counter[str] = Counter()
        self._turn = asyncio.Lock()  # FIFO: one waiter at a time looks for a free slot
        self._released = asyncio.Event()
        self._waiters = 0
        self._bounds: set[tuple[asyncio.Timeout, float]] = set()
        """The bounded waits in progress, with their seconds (restarted when the queue moves)."""

    @property
    def waiting(self) -> int:
        """How many tasks wait for a slot (approximate; for progress display)."""
        return self._waiters

    @property
    def effective_limit(self) -> int:
        """``limit``, lowered to the controller's limit where the stack reported one."""
        if self._stack_limit is None:
            return self.limit
        return min(self.limit, self._stack_limit)

    def held_by(self, addresses: Iterable[str]) -> int:
        """Slots held now by sessions for these devices (addresses, any case; each counted once).

        A caller that knows some holders will not give their slot back soon (the agent's kept
        sessions) compares this with :attr:`effective_limit` to tell a wait that cannot end.
        """
        return sum(self._holders.get(key, 0) for key in {_key(a) for a in addresses if a})

    async def read(self) -> AdapterSlots | None:
        """Read the adapter's connections now and update :attr:`foreign` (``None``: unknown)."""
        if self._probe is None:
            return None
        slots = await self._probe()
        if slots is None or not slots.present:
            # Nothing known (or no such adapter: the connect then fails with the stack's own
            # error, rather than waiting for a slot that never comes).
            self.foreign = 0
            self._stack_limit = None
        else:
            self.foreign = len(slots.connected - set(self._holders))
            self._stack_limit = slots.limit
        return slots

    async def available(self) -> int:
        """Free slots now: the (effective) limit minus ours minus foreign connections."""
        await self.read()
        return max(0, self.effective_limit - self.active - self.foreign)

    async def acquire(
        self,
        address: str | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - restarted as the queue moves
    ) -> None:
        """Wait for a slot and take it.

        Args:
            address: The device the slot is for: once connected it is ours, not foreign.
            timeout: Seconds to wait while the queue does not move; every slot granted or
                given back restarts them (``None``: no bound). A wait that ends without a
                slot, by this bound or by a cancellation, leaves the counts as they were.

        Raises:
            TimeoutError: ``timeout`` seconds passed without a slot granted or given back.
        """
        self._waiters += 1
        try:
            async with asyncio.timeout(timeout) as bound:
                entry = None if timeout is None else (bound, timeout)
                if entry is not None:
                    self._bounds.add(entry)
                try:
                    await self._take_turn(address, None)
                finally:
                    if entry is not None:
                        self._bounds.discard(entry)
        finally:
            self._waiters -= 1

    async def try_acquire(self, address: str | None = None) -> bool:
        """Take a slot if one is free now and nobody waits for one; never wait for a slot.

        Returns:
            Whether a slot was taken (``False``: all taken, or others queue before this call).
        """
        if self._waiters or self._turn.locked():
            return False  # first come, first served: not ahead of those who wait
        async with self._turn:
            if self.active >= self.limit:
                return False
            if self._probe is not None and await self.available() <= 0:
                return False
            self._grant(address)
            return True

    async def _take_turn(self, address: str | None, group: _Group | None) -> bool:
        """Queue for the turn, wait for a free slot, take it (``group``: unless another won).

        Returns:
            Whether this limiter's slot was taken (``False``: ``group`` was granted elsewhere).
        """
        async with self._turn:
            while True:
                self._released.clear()
                recheck: float | None = None
                if self.active < self.limit:
                    if self._probe is None:
                        break
                    if await self.available() > 0:
                        break
                    recheck = _RECHECK_S
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(recheck):
                        await self._released.wait()
            # taken with no await in between, before a bound can end the wait
            if group is not None and not group.grant(self):
                return False  # another adapter granted first: the next in this queue looks
            self._grant(address)
            return True

    def _grant(self, address: str | None) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        self._holders[_key(address)] += 1
        self._moved()

    def release(self, address: str | None = None) -> None:
        """Give a slot back (``address``: the one given to :meth:`acquire`)."""
        if self.active <= 0:
            raise UsageError("ConnectionLimiter.release() without acquire()")
        self.active -= 1
        key = _key(address)
        self._holders[key] -= 1
        if self._holders[key] <= 0:
            del self._holders[key]
        self._released.set()
        self._moved()

    def _moved(self) -> None:
        """The queue moved (a slot granted or given back): every bounded wait starts again."""
        if not self._bounds:
            return
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:  # released outside the loop: no wait there to resume
            return
        for bound, seconds in self._bounds:
            if not bound.expired():
                bound.reschedule(now + seconds)

    @contextlib.asynccontextmanager
    async def slot(
        self,
        address: str | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - as acquire's
    ) -> AsyncIterator[None]:
        """Hold a slot for the duration of the ``async with`` block (``timeout``: see acquire)."""
        await self.acquire(address, timeout=timeout)
        try:
            yield
        finally:
            self.release(address)

    def reset_peak(self) -> None:
        """Restart peak measurement from the current number of active slots."""
        self.peak = self.active

    def __repr__(self) -> str:
        return (
            f"ConnectionLimiter(limit={self.limit}, active={self.active}, peak={self.peak}, "
            f"foreign={self.foreign})"
        )


def _key(address: str | None) -> str:
    # A slot taken without an address never matches a connected device's address.
    return address.upper() if address else ""


class _Group:
    """One wait registered in the queues of several limiters; the first slot granted wins.

    The wait counts in every limiter's :attr:`~ConnectionLimiter.waiting` from its start; the
    moment one limiter grants, it is withdrawn from all the others (their counts drop and their
    queue tasks are cancelled) before anything else runs.
    """

    def __init__(self, limiters: list[ConnectionLimiter], address: str | None) -> None:
        self.address = address
        self.winner: ConnectionLimiter | None = None
        self.closed = False
        self.granted: asyncio.Future[ConnectionLimiter] = asyncio.get_running_loop().create_future()
        self.tasks: list[asyncio.Task[None]] = []
        self._registered: list[ConnectionLimiter] = []
        for limiter in limiters:
            limiter._waiters += 1  # the group's own count in each queue
            self._registered.append(limiter)

    def withdraw(self, limiter: ConnectionLimiter) -> None:
        """No longer wait in ``limiter``'s queue (its count drops once, at once)."""
        if limiter in self._registered:
            self._registered.remove(limiter)
            limiter._waiters -= 1

    def grant(self, limiter: ConnectionLimiter) -> bool:
        """``limiter`` has a slot for the group: take it unless the group ended or won already."""
        if self.closed or self.winner is not None:
            return False
        self.winner = limiter
        self.close()
        if not self.granted.done():
            self.granted.set_result(limiter)
        return True

    def fail(self, error: BaseException) -> None:
        """A queue task failed unexpectedly: the wait ends with its error."""
        if not self.closed and not self.granted.done():
            self.granted.set_exception(error)

    def close(self) -> None:
        """End the wait in every queue: counts drop now, the queue tasks are cancelled."""
        self.closed = True
        for limiter in list(self._registered):
            self.withdraw(limiter)
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()

    async def member(self, limiter: ConnectionLimiter) -> None:
        """The group's place in ``limiter``'s queue."""
        try:
            await limiter._take_turn(self.address, self)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the waiting caller
            self.fail(exc)
        finally:
            self.withdraw(limiter)


async def acquire_first(
    limiters: Sequence[ConnectionLimiter],
    address: str | None = None,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - restarted as any queue moves
) -> ConnectionLimiter:
    """Take the first slot that comes free on any of several limiters (one per adapter).

    A free slot is taken at once, in the order given (the caller's preference); when none is
    free, the wait is registered in every limiter's queue (first come, first served in each)
    and ends with the first slot granted, which withdraws it from all the others at once. With
    one limiter this is :meth:`ConnectionLimiter.acquire`.

    Args:
        limiters: The limiters, most preferred first (duplicates are ignored).
        address: The device the slot is for.
        timeout: Seconds to wait while no queue moves: a slot granted or given back on any of
            the limiters restarts them (``None``: no bound). A wait that ends without a slot, by
            this bound or by a cancellation, leaves every limiter's counts as they were.

    Returns:
        The limiter whose slot was taken (give it back with its :meth:`~ConnectionLimiter.release`).

    Raises:
        TimeoutError: ``timeout`` seconds passed with no slot granted or given back on any.
        UsageError: No limiter given.
    """
    unique = list(dict.fromkeys(limiters))
    if not unique:
        raise UsageError("acquire_first() needs at least one limiter")
    if len(unique) == 1:
        await unique[0].acquire(address, timeout=timeout)
        return unique[0]
    for limiter in unique:
        if await limiter.try_acquire(address):
            return limiter
    group = _Group(unique, address)
    try:
        async with asyncio.timeout(timeout) as bound:
            entry = None if timeout is None else (bound, timeout)
            if entry is not None:
                for limiter in unique:
                    limiter._bounds.add(entry)  # one bound, restarted by any queue
            try:
                group.tasks = [asyncio.create_task(group.member(limiter)) for limiter in unique]
                winner = await group.granted
            finally:
                if entry is not None:
                    for limiter in unique:
                        limiter._bounds.discard(entry)
    except BaseException:
        group.close()  # no grant after this
        if group.winner is not None:  # granted while the wait was ending: given back
            group.winner.release(address)
        await _settle(group.tasks)
        raise
    group.close()
    try:
        await _settle(group.tasks)
    except asyncio.CancelledError:
        winner.release(address)
        raise
    return winner


async def _settle(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for cancelled queue tasks to end, even when cancelled meanwhile (re-raised after)."""
    cancelled = False
    pending = [task for task in tasks if not task.done()]
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
        pending = [task for task in tasks if not task.done()]
    if cancelled:
        raise asyncio.CancelledError


# One registry per event loop: asyncio primitives must not cross loops, and a CLI run or a test
# has its own loop. Keys are (client backend class, adapter name).
_REGISTRY: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[object, str | None], ConnectionLimiter]
] = weakref.WeakKeyDictionary()


def limiter_for(
    backend: BleBackend | None, limit: int, *, adapter: str | None = None
) -> ConnectionLimiter:
    """Return the shared limiter for a backend and adapter in the running event loop.

    The first call for a key creates the limiter with ``limit``, reading the adapter's state
    through :func:`~wking_device.ble.adapter_slots`; later calls return it as is.

    Args:
        backend: The backend pair (``None`` for the platform default).
        limit: Slots, used when the limiter is created (``Settings.ble.max_connections``).
        adapter: The adapter name (e.g. ``hci0``), when several are in use.
    """
    loop = asyncio.get_running_loop()
    per_loop = _REGISTRY.setdefault(loop, {})
    key = (backend.client if backend is not None else None, adapter)
    limiter = per_loop.get(key)
    if limiter is None:
        probe = functools.partial(adapter_slots, backend=backend, adapter=adapter)
        limiter = per_loop[key] = ConnectionLimiter(limit, probe=probe)
    return limiter
