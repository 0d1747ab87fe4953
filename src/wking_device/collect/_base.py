"""The collector base: permit handling, batching and flushing to a sink.

This module owns the one path by which a collector's data becomes a
:class:`~wking_device.models.Record`: :meth:`Collector._emit`, which demands a valid permit, and
:meth:`Collector.flush`, which re-checks it before the sink sees the batch. It does not decide
what a record contains (the concrete collectors do) nor whether consent exists (the gate does).

Cost: a denied event costs two attribute reads and an integer comparison (the permit is
re-requested only when the gate's generation changes); a collected one costs a dict and a record.

Latency: with an event loop running, a collector hands its records to the sink as soon as it has
some and no hand-over is in flight (``eager=True``, the default); records that arrive during a
hand-over go in the next one. Batches therefore grow with the load and a record waits for at most
one hand-over plus the sink's own commit — the store's group commit works the same way — instead
of a timer. ``eager=False`` keeps records until :meth:`flush`, ``batch_size`` or :meth:`run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, ClassVar, Self

from wking_device.collect._sink import RecordSink
from wking_device.consent import ConsentGate, Permit, Revocation
from wking_device.errors import ConsentRequired, PermitRevoked, UsageError
from wking_device.models import Record

__all__ = ["Collector", "CollectorStats"]

_LOGGER = logging.getLogger(__name__)


class CollectorStats:
    """Counters of one collector.

    Attributes:
        emitted: Records created under a valid permit.
        skipped: Inputs ignored because no permit was in force.
        flushed: Records the sink accepted.
        discarded: Buffered records dropped because their permit was revoked before the sink
            took them.
        overflowed: Records dropped because the buffer was full (the sink is too slow or down).
    """

    __slots__ = ("discarded", "emitted", "flushed", "overflowed", "skipped")

    def __init__(self) -> None:
        self.emitted = 0
        self.skipped = 0
        self.flushed = 0
        self.discarded = 0
        self.overflowed = 0

    def as_dict(self) -> dict[str, int]:
        """Return the counters as a dict."""
        return {name: getattr(self, name) for name in self.__slots__}


class Collector:
    """Base class of every collector: declares categories, emits only under a valid permit.

    Subclasses set :attr:`categories` and call :meth:`_emit` with a body and the permit from
    :meth:`_permit`. Revocations reach the collector at once through the gate's subscription:
    buffered records whose permit was revoked are dropped (or, where a subclass can, reduced to
    what a remaining permit allows) and never reach the sink.

    Args:
        gate: The consent gate.
        sink: Where flushed batches go.
        batch_size: Flush automatically (when an event loop is running) once this many records
            are buffered.
        max_buffer: Drop new records beyond this many unflushed ones (counted in
            ``stats.overflowed``).
        eager: Hand records to the sink as soon as they arrive (when an event loop is running
            and no hand-over is in flight); ``False``: only on :meth:`flush`, :meth:`run` or a
            full ``batch_size``.
        on_error: Called with the exception when a hand-over in the background fails (the
            records are kept; background hand-overs pause until :meth:`flush` succeeds). Without
            it, the failure is logged as a warning.
    """

    categories: ClassVar[frozenset[str]] = frozenset()
    """The categories every record of this collector needs."""

    def __init__(
        self,
        gate: ConsentGate,
        sink: RecordSink,
        *,
        batch_size: int = 1000,
        max_buffer: int = 100_000,
        eager: bool = True,
        on_error: Callable[[Exception], object] | None = None,
    ) -> None:
        if not self.categories:
            raise TypeError(f"{type(self).__name__} declares no categories")
        self._gate = gate
        self._sink = sink
        self._batch_size = batch_size
        self._max_buffer = max_buffer
        self._eager = eager
        self._eager_paused = False  # the last eager hand-over failed: wait for flush()/run()
        self._on_error = on_error
        self._buffer: list[tuple[Record, Permit]] = []
        self._permits: dict[frozenset[str], tuple[int, Permit | None]] = {}
        self._flush_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] | None = gate.subscribe(self._on_revocation)
        self.stats = CollectorStats()

    # --- permits ------------------------------------------------------------------------------

    def _permit(self, categories: frozenset[str] | None = None) -> Permit | None:
        """Return a valid permit for ``categories`` (default: :attr:`categories`), or ``None``.

        A denied request is retried only after the gate's state changed. A closed gate issues
        none (its permits are revoked): the collector then collects nothing, without an error.
        """
        if self._gate.closed:
            return None
        wanted = self.categories if categories is None else categories
        cached = self._permits.get(wanted)
        if cached is not None:
            generation, permit = cached
            if permit is not None and permit.valid:
                return permit
            if generation == self._gate.generation:
                return None
        generation = self._gate.generation
        permit = self._gate.try_permit(wanted)
        self._permits[wanted] = (generation, permit)
        return permit

    @property
    def active(self) -> bool:
        """Whether the collector may collect right now."""
        return self._permit() is not None

    # --- emitting -----------------------------------------------------------------------------

    def _emit(self, category: str, body: dict[str, Any], permit: Permit, **fields: Any) -> None:
        """Buffer one record under ``permit``; the only way a collector creates a record.

        Raises:
            PermitRevoked: The permit was revoked.
            ConsentRequired: The permit does not cover the category.
        """
        permit.require(category)
        if len(self._buffer) >= self._max_buffer:
            self.stats.overflowed += 1
            return
        record = Record(
            category=category,
            consent_id=permit.consent_ids[category],
            policy_version=permit.policy_versions[category],
            body=body,
            **fields,
        )
        self._buffer.append((record, permit))
        self.stats.emitted += 1
        if (self._eager and not self._eager_paused) or len(self._buffer) >= self._batch_size:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if any(not task.done() for task in self._tasks):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (synchronous use): the owner flushes
        task = loop.create_task(self._flush_quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_quietly(self) -> None:
        try:
            await self.flush()
            # what arrived during that hand-over goes next (the task in flight kept
            # _schedule_flush from starting another)
            while self._buffer and (self._eager or len(self._buffer) >= self._batch_size):
                if not await self.flush():
                    break  # nothing the sink would take (e.g. every permit revoked)
        except Exception as exc:
            # a failing sink (a full disk, a closed store) is not retried per record: the next
            # flush() or run() tick tries again and, when it succeeds, resumes eager hand-overs
            self._eager_paused = True
            if self._on_error is not None:
                self._on_error(exc)
                return
            _LOGGER.warning(
                "%s: flushing to the sink failed (%s: %s); records kept for the next flush",
                type(self).__name__,
                type(exc).__name__,
                exc,
            )
            _LOGGER.debug("the sink's error", exc_info=True)

    def _salvage(self, record: Record) -> tuple[Record, Permit] | None:
        """Reduce a record whose permit was revoked to what a valid permit still allows.

        The default keeps nothing; the operation-log collector strips MAC fields.
        """
        del record
        return None

    def _on_revocation(self, revocation: Revocation) -> None:
        # Called synchronously by the gate, after the permits are invalid.
        del revocation
        self._buffer = self._revalidated(self._buffer)

    def _revalidated(self, items: list[tuple[Record, Permit]]) -> list[tuple[Record, Permit]]:
        kept: list[tuple[Record, Permit]] = []
        for record, permit in items:
            if permit.valid:
                kept.append((record, permit))
                continue
            salvaged = self._salvage(record)
            if salvaged is None:
                self.stats.discarded += 1
            else:
                kept.append(salvaged)
        return kept

    @property
    def pending(self) -> int:
        """How many records are buffered."""
        return len(self._buffer)

    async def flush(self) -> int:
        """Hand the buffered records to the sink, in one batch per permit.

        Records whose permit was revoked in the meantime are dropped (or salvaged); a batch the
        sink refuses for consent reasons is dropped; on any other sink error the batch is put
        back and the error raised.

        Returns:
            How many records the sink accepted.
        """
        async with self._flush_lock:
            items, self._buffer = self._buffer, []
            accepted = 0
            # A second pass takes records salvaged after a revocation during the first.
            for _ in range(2):
                batches: dict[int, tuple[Permit, list[Record]]] = {}
                for record, permit in self._revalidated(items):
                    batches.setdefault(id(permit), (permit, []))[1].append(record)
                items = []
                queue = list(batches.values())
                while queue:
                    permit, records = queue.pop(0)
                    if not permit.valid:
                        items.extend((record, permit) for record in records)
                        continue
                    try:
                        await self._sink.append(records, permit)
                    except PermitRevoked:
                        items.extend((record, permit) for record in records)
                        continue
                    except ConsentRequired:
                        self.stats.discarded += len(records)
                        continue
                    except BaseException:
                        unsent = [(r, p) for p, rs in [(permit, records), *queue] for r in rs]
                        self._buffer[:0] = unsent + items
                        raise
                    accepted += len(records)
                    self.stats.flushed += len(records)
                if not items:
                    break
            self._buffer[:0] = self._revalidated(items)
            self._eager_paused = False
            return accepted

    async def run(self, interval: float = 1.0) -> None:
        """Flush every ``interval`` seconds and pick up other processes' consent changes.

        Runs until cancelled; flushes once more on the way out.

        Args:
            interval: Seconds between flushes.

        Raises:
            UsageError: ``interval`` is not a positive number of seconds.
        """
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int | float)
            or not 0 < interval < float("inf")
        ):
            raise UsageError(f"interval must be a positive number of seconds, not {interval!r}")
        try:
            while True:
                await asyncio.sleep(interval)
                self._gate.refresh()
                await self._flush_quietly()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())

    async def aclose(self) -> None:
        """Flush what is buffered, stop listening to the gate and cancel background flushes."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        try:
            await self.flush()
        finally:
            self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Flush what is buffered (under a still-valid permit), then :meth:`close`."""
        try:
            await self.flush()
        finally:
            self.close()

    def close(self) -> None:
        """Stop listening to the gate and drop whatever is still buffered."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._buffer = []
