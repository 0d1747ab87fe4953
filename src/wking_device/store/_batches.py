"""The group commit's shapes: batches of appends, queued calls, INSERT statements, outcomes.

This module owns what travels between the event loops and the store's writer thread: a batch
of one loop's appends (:class:`_Batch`) grouped by permit (:class:`_Group`), a queued call
(:class:`_Call`) and the stop marker; the multi-row INSERT shapes a batch is written with (few,
so their prepared statements are reused); and the callbacks that settle the callers' futures on
their loops.

It does not check, seal or write records, nor queue anything
(:class:`~wking_device.store.RecordStore` and its writer thread do).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable

    from wking_device.consent import Permit
    from wking_device.models import Record


@dataclass(slots=True)
class _Group:
    """The appends of one batch made under one permit: checked once, one outcome for all."""

    permit: Permit
    needed: set[str]
    records: list[Record]
    plaintexts: list[bytes]
    scopes: list[str]
    futures: list[asyncio.Future[None]]


@dataclass(slots=True)
class _Batch:
    """Appends of one event loop for one group commit.

    Filled on the loop's thread under the enqueue lock and queued when the loop has run every
    task already woken (one ``call_soon``), so producers resumed together by one commit share
    the next one; queued earlier past ``_HAND_OVER_ROWS`` rows or before any other store call.
    The writer thread only reads a batch once it is queued (nothing joins it after that).
    """

    loop: asyncio.AbstractEventLoop
    groups: dict[int, _Group] = dataclasses.field(default_factory=dict)
    count: int = 0
    size: int = 0
    """Bytes the size cap counts for it while a writer process holds it (see ``_appender``)."""
    after: int = 0
    """Once a writer process committed it: the rows that commit added are numbered (``seq``)
    ``after + 1`` to ``upto``; a record it ignored as already stored has its earlier row."""
    upto: int = 0
    child: tuple[str, int] | None = None
    """Once handed back by a writer process that died holding it: that process's token and
    the batch's number (it may have committed the batch: see ``_store_child.COMMITS_ROW``)."""


@dataclass(slots=True)
class _Call:
    fn: Callable[[], Any]
    future: asyncio.Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None


_STOP: Final = object()


_HAND_OVER_ROWS: Final = 512
"""Rows after which a batch is queued at once instead of at the end of the loop's turn.

Only a turn of more than this many appends (e.g. 1,000 producers resumed by one commit) is cut:
the writer can take a batch queued mid-turn only once the interpreter forces a GIL switch (its
5 ms switch interval), so each cut costs contended GIL hand-offs. 512 against 256 at 1,000
producers: about half the writer's context switches per commit, ≈ 20 % less CPU per record and
a higher rate in seven alternating pairs (docs/performance.md); one cut per 1,000-row turn still
lets the writer commit the first half while the loop builds the second."""


_CHILD_HAND_OVER_ROWS: Final = 32
"""The same cut with a writer process: it commits one batch while the loop fills the next
(another process takes no GIL from the loop), so shorter batches overlap more (benchmarks/
ingest.py: 32-50 rows with 100 producers)."""


_Outcome = tuple[list["asyncio.Future[None]"], BaseException | None]

_WAKE_CHUNK: Final = 256
"""Callers woken at most in one turn of their loop; the others in the next turns, in order.

Waking a caller allocates two objects the garbage collector tracks (asyncio's handle and its
arguments), which live until the caller runs. One commit acknowledging 1,000 producers at once
allocated 2,000 of them, past the collector's threshold (700 on 3.11 and 3.12): two or three
collections a commit, whose survivors (those very handles) were promoted until a full
collection of every object of the process (10-28 ms) stopped the loop, twice per 200,000
records. 256 a turn keep the count below the threshold (benchmarks/ingest.py, 1,000 producers:
about 35 collections and no full one per 200,000 records against 210 and 2)."""

_WAKING: dict[asyncio.AbstractEventLoop, collections.deque[_Outcome]] = {}
"""Per loop, the outcomes still to deliver, oldest first: from a turn that wakes callers
until a turn has no one left to wake (each loop's entry is read and changed on its own thread
only)."""


def _settle_groups(outcomes: list[_Outcome]) -> None:
    """Resolve the futures of batches' permit groups, one outcome per group (on their loop).

    In the order acknowledgements come, at most :data:`_WAKE_CHUNK` callers a turn of the
    loop: up to that many now, unless this turn woke callers already; the rest in the next
    turns, behind those still waiting from before.
    """
    loop = next((futures[0].get_loop() for futures, _ in outcomes if futures), None)
    if loop is None:
        return
    waiting = _WAKING.get(loop)
    if waiting is not None:  # callers were woken this turn, or wait: these go behind them
        waiting.extend(outcomes)
        return
    for other in list(_WAKING):  # list(): one step, while other loops' threads may change it
        if other.is_closed():  # closed with callers still waiting, never resumed: let it go
            _WAKING.pop(other, None)
    waiting = collections.deque(outcomes)
    try:  # kept until a turn wakes no one: what comes meanwhile waits for the next turn
        loop.call_soon(_wake_later, loop)  # first: a failure below does not stop the next turns
    except RuntimeError:  # the loop is closed: its callers can no longer be resumed
        _wake(waiting)
        return
    _WAKING[loop] = waiting
    _wake(waiting)


def _wake_later(loop: asyncio.AbstractEventLoop) -> None:
    """The next turn's share of the callers waiting on ``loop`` (from ``call_soon``)."""
    waiting = _WAKING[loop]
    if not waiting:
        del _WAKING[loop]  # a turn with no one to wake: the next acknowledgement wakes at once
        return
    loop.call_soon(_wake_later, loop)
    _wake(waiting)


def _wake(waiting: collections.deque[_Outcome]) -> None:
    """Resolve up to :data:`_WAKE_CHUNK` futures from the head of ``waiting``."""
    budget = _WAKE_CHUNK
    while waiting:
        futures, exc = waiting[0]
        # taken off the queue first: a future that fails to resolve is not tried again
        if len(futures) > budget:
            waiting[0] = (futures[budget:], exc)
            _resolve(futures[:budget], exc)
            return
        waiting.popleft()
        budget -= len(futures)
        _resolve(futures, exc)


def _resolve(futures: list[asyncio.Future[None]], exc: BaseException | None) -> None:
    if exc is None:
        for future in futures:
            if not future.done():  # a cancelled caller: its records are committed anyway
                future.set_result(None)
        return
    for future in futures:
        if not future.done():  # one exception for the group (a future keeps its traceback)
            future.set_exception(exc)


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Resolve futures on their loop (called through ``call_soon_threadsafe``)."""
    for future, result, exc in outcomes:
        if future.done():
            continue  # the caller was cancelled; the work is done anyway
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
