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
    """Once a writer process committed it: the rows that commit added have a greater ``seq``
    (a record it ignored as already stored has its earlier row, at or below it)."""


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


def _settle_groups(outcomes: list[tuple[list[asyncio.Future[None]], BaseException | None]]) -> None:
    """Resolve the futures of a batch's permit groups, one outcome per group (on their loop)."""
    for futures, exc in outcomes:
        if exc is None:
            for future in futures:
                if not future.done():  # a cancelled caller: its records are committed anyway
                    future.set_result(None)
            continue
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
