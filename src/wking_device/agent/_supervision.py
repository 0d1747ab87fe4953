"""The agent's supervision: steps cut short on a stop, parts that fail alone, backoff.

This module owns :class:`AgentSupervision`, the base of :class:`~wking_device.agent.Agent` that
keeps a run going and stoppable: running each step of the loop against :meth:`Agent.stop` and
the end of the duration (a step that ignores its cancellation is left behind after
``stop_grace`` seconds), supervising the long-lived parts (the uploader) with a backoff that
doubles up to ``max_backoff``, counting each part's failures, logging a failure once until the
part recovers, keeping the last errors for the status file (scrubbed of addresses, keys and
speakers' names), and the collectors' flush and the retention sweep that fail alone. It does not
scan, connect or read (see :mod:`._cycle`), watch consent (see :mod:`._consent_watch`), or own
the run, the summary and the status file (see :mod:`._agent`, whose ``Agent.__init__``
initialises the state declared here).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import TYPE_CHECKING, Any, TypeVar

from wking_device._redact import redact

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from wking_device.agent._agent import AgentSummary
    from wking_device.collect import Collector, DiagnosticsCollector
    from wking_device.store import RecordStore

__all__ = ["AgentSupervision"]

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")

_OVERRUN_S = 0.5
"""Seconds a step may run past the end of the duration to finish (a scan stopping), then cut."""

_LAST_ERRORS = 5  # errors kept in the status file
_MAX_SUMMARY_ERRORS = 100  # error lines kept in the summary of a long run
_ERROR_CHARS = 200  # an error message's length there
_MIN_NAME = 3  # shorter speaker names are not taken out of messages (see AgentSupervision._scrub)
_NAME_ANYWHERE = 8  # names this long are taken out wherever they appear; shorter, where alone


class _Interrupted(Exception):
    """A step of the loop was cut short by :meth:`Agent.stop` or the end of the duration."""


class AgentSupervision:
    """The supervision of an :class:`~wking_device.agent.Agent`'s run (its base class).

    The state is initialised by ``Agent.__init__``; it is declared here for the methods that
    supervise the run.
    """

    if TYPE_CHECKING:  # declared for the type checker only: no annotations at run time
        _store: RecordStore
        _interval: float
        _stop_grace: float
        _stop: asyncio.Event
        _deadline: float | None
        _max_cycles: int | None
        _stragglers: set[asyncio.Task[Any]]
        _max_backoff: float
        _reported: dict[str, str]
        _streak: dict[str, int]
        _last_errors: list[dict[str, Any]]
        _names: set[str]
        diagnostics: DiagnosticsCollector
        summary: AgentSummary

        # Provided by Agent: its collectors.

        @property
        def collectors(self) -> tuple[Collector, ...]: ...

    def _ended(self) -> bool:
        if self._stop.is_set():
            return True
        if self._max_cycles is not None and self.summary.cycles >= self._max_cycles:
            return True
        return self._deadline is not None and asyncio.get_running_loop().time() >= self._deadline

    async def _step(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run one step of the loop, cut short by :meth:`stop` or the end of the duration.

        Raises:
            _Interrupted: The step was cut short (it was cancelled, and left behind when it did
                not finish within ``stop_grace``).
        """
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(coro)
        stopped = asyncio.ensure_future(self._stop.wait())
        timeout = None
        if self._deadline is not None:
            timeout = max(0.0, self._deadline + _OVERRUN_S - loop.time())
        try:
            await asyncio.wait(
                {task, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            await self._let_go(task)  # the run itself is cancelled: so is its step
            raise
        finally:
            stopped.cancel()
        if not task.done():
            await self._let_go(task)
            raise _Interrupted
        if task.cancelled():
            raise _Interrupted
        return task.result()

    async def _let_go(self, task: asyncio.Task[Any]) -> None:
        """Cancel a step and give it ``stop_grace`` seconds; past that, leave it behind."""
        task.cancel()
        task.add_done_callback(_consume)
        try:
            await asyncio.wait({task}, timeout=self._stop_grace)
        finally:
            if not task.done():
                # A Bluetooth call that swallowed its cancellation: the run does not wait for it.
                _LOGGER.warning(
                    "a Bluetooth operation did not stop within %g s; leaving it behind",
                    self._stop_grace,
                )
                self._stragglers.add(task)
                task.add_done_callback(self._stragglers.discard)

    async def _flush(self) -> None:
        failed = False
        for collector in self.collectors:
            try:
                await collector.flush()
            except Exception as exc:  # noqa: BLE001 - one collector must not stop the others
                # The collector keeps the batch; the next cycle retries it.
                self._failed("store", exc)
                failed = True
        if not failed:
            self._recovered("store")

    async def _sweep(self) -> None:
        try:
            await self._store.sweep(now=time.time())
        except Exception as exc:  # noqa: BLE001 - the next sweep retries
            self._failed("retention", exc)
        else:
            self._recovered("retention")

    async def _supervise(self, part: str, start: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a long-lived part; restart it with backoff whenever it raises, until cancelled."""
        while not self._stop.is_set():
            try:
                await start()
            except Exception as exc:  # noqa: BLE001 - a failing part must not end the run
                await asyncio.sleep(self._failed(part, exc))
            else:
                return

    def _failed(self, where: str, exc: BaseException) -> float:
        """Count a failure of a part, log it once, keep it for the status; return the backoff.

        The same failure again (type and message) is not logged again until the part recovers.
        """
        failures = self.summary.failures
        failures[where] = failures.get(where, 0) + 1
        streak = self._streak[where] = self._streak.get(where, 0) + 1
        key = f"{type(exc).__name__}: {exc}"
        # the log line, the summary (printed on standard output, the journal under systemd) and
        # the status file say the same, scrubbed of addresses, keys and speakers' names
        message = self._scrub(str(exc), limit=None)
        if self._reported.get(where) != key:
            self._reported[where] = key
            _LOGGER.warning("%s failed (%s): %s", where, type(exc).__name__, message)
        if len(self.summary.errors) < _MAX_SUMMARY_ERRORS:
            self.summary.errors.append(f"{where}: {message}")
        self._last_errors.append(
            {
                "at": time.time(),
                "part": where,
                "type": type(exc).__name__,
                "message": message[:_ERROR_CHARS],
            }
        )
        del self._last_errors[:-_LAST_ERRORS]
        self.diagnostics.on_exception(exc, where=where)
        return float(min(self._max_backoff, self._interval * 2.0 ** min(streak - 1, 20)))

    def _recovered(self, where: str) -> None:
        if self._streak.pop(where, 0) and self._reported.pop(where, None) is not None:
            _LOGGER.info("%s works again", where)

    def _scrub(self, text: str, *, limit: int | None = _ERROR_CHARS) -> str:
        """No address, key or speaker name in an error message the run reports.

        The log line of a failure, the summary's lines (standard output, the journal under
        systemd) and the messages kept in the status file go through this. A name of
        :data:`_NAME_ANYWHERE` characters or more is replaced wherever it appears; a shorter one
        only where it stands alone (not inside a longer word: a speaker named ``Kit`` does not
        mangle ``Kitchen``); one shorter than :data:`_MIN_NAME` is left, as it tells no speaker
        apart and would match words such as ``a`` or the ``I`` of ``I/O``. Addresses and keys
        are redacted after (a MAC-shaped name is taken out as a name first).
        """
        names = sorted((n for n in self._names if len(n) >= _MIN_NAME), key=len, reverse=True)
        if names:
            pattern = "|".join(
                re.escape(name)
                if len(name) >= _NAME_ANYWHERE
                else rf"(?<!\w){re.escape(name)}(?!\w)"
                for name in names
            )
            text = re.sub(pattern, "[NAME]", text)
        text = redact(text)
        return text if limit is None else text[:limit]


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a left-behind task's outcome so asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()
