"""The agent's cycle: a scan, the kept sessions, the polled reads.

This module owns :class:`AgentCycle`, the base of :class:`~wking_device.agent.Agent` that runs
one cycle: a scan (on ``ble.adapter``, or on every one of ``ble.adapters``), choosing the
speakers it may look after (the bound ones, or with ``connect_all`` and no bindings every one
seen), keeping up to ``keep_connected`` of them connected through the
:class:`~wking_device.ble.SessionKeeper` and reading them over their open links, polling the
rest (connect, read, disconnect) unless the kept sessions hold every connection slot a poll
could use (then the polls are skipped and counted as ``reads_no_slot``), and closing the kept
sessions when nothing could be kept. It does not decide what may be collected (the collectors
and :mod:`._consent_watch` do), supervise or stop the run (see :mod:`._supervision`,
:mod:`._agent`), or do any Bluetooth itself (:mod:`wking_device.ble` does); the state it uses is
initialised by ``Agent.__init__``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from wking_device.agent._consent_watch import AgentConsent
from wking_device.agent._supervision import _Interrupted
from wking_device.ble import Speaker, discover, limiter_for, read_all
from wking_device.errors import AdapterUnavailable, BluetoothError

if TYPE_CHECKING:
    from collections.abc import Callable

    from wking_device.ble import BleBackend, EventBus, SessionKeeper
    from wking_device.collect import DeviceInfoCollector
    from wking_device.config import Settings

__all__ = ["AgentCycle"]

_LOGGER = logging.getLogger(__name__)

_SEEN_MAX = 4096
"""Distinct addresses a run remembers for ``speakers_seen`` (then counted no further): a device
advertising look-alikes under ever new random addresses must not grow the agent without end."""


class AgentCycle(AgentConsent):
    """The cycle of an :class:`~wking_device.agent.Agent` (a base class; see the module)."""

    if TYPE_CHECKING:  # initialised by Agent.__init__; no annotations at run time
        _settings: Settings
        _backend: BleBackend | None
        _events: EventBus
        _bound: set[str] | Callable[[], set[str]] | None
        _connect_all: bool
        _scan_seconds: float
        _seen: set[str]
        _read: set[str]
        _scanned: bool
        _no_slot: str | None
        device_info: DeviceInfoCollector
        sessions: SessionKeeper

    async def _close_sessions(self) -> None:
        """Disconnect the kept speakers, within ``stop_grace`` seconds."""
        try:
            async with asyncio.timeout(self._stop_grace):
                await self.sessions.aclose()
        except TimeoutError:
            _LOGGER.warning("kept sessions did not close within %g s", self._stop_grace)

    async def _cycle(self) -> None:
        self._poll_consent()  # another process may have granted or withdrawn
        if self._failure is not None or not self._may_keep_anything():
            # nothing could be kept: no connection stays open (counted first: a stop may cancel
            # the cycle while the sessions close, and the summary must not claim them)
            self.summary.sessions_kept = 0
            await self._close_sessions()
            return  # and no scan, no connection
        loop = asyncio.get_running_loop()
        seconds = self._scan_seconds
        if self._deadline is not None:
            seconds = max(0.1, min(seconds, self._deadline - loop.time()))
        try:
            ble = self._settings.ble
            found = await discover(
                seconds,
                backend=self._backend,
                events=self._events,
                # `[ble] adapters`: a speaker any of them hears is found
                adapter=None if ble.adapters else ble.adapter,
                adapters=ble.adapters or None,
            )
        except AdapterUnavailable:
            raise
        except BluetoothError as exc:
            self._scanned = True
            self._failed("scan", exc)
            return
        self._scanned = True
        for seen in found:
            if len(self._seen) >= _SEEN_MAX:
                break
            self._seen.add(seen.address.upper())
        bound = {address.upper() for address in self._bound_addresses()}
        targets = [
            s for s in found if s.address.upper() in bound or (self._connect_all and not bound)
        ]
        # A kept speaker may not advertise while connected: it stays wanted while bound (or,
        # with connect_all and no bindings, while kept).
        wanted = bound or (
            {s.address.upper() for s in targets} | self.sessions.kept
            if self._connect_all
            else set()
        )
        # a cancellation lost inside the scan must not lead to connections after a stop
        if self._ended() or not self._may_keep_anything():
            return
        kept = await self.sessions.keep(wanted, targets)
        self.summary.sessions_kept = len(kept)
        # the names an error message could hold: those of the speakers it connects to
        self._names.update(s.name for s in targets if s.name)
        await self._read_kept(kept)
        targets = [s for s in targets if s.address.upper() not in kept]
        if not targets:
            return
        if await self._slots_kept_for_good(len(targets)):
            # no slot can come free while these sessions are kept: waiting slot_timeout per
            # speaker would only delay the next cycle, which looks again
            self.summary.reads_failed += len(targets)
            self.summary.reads_no_slot += len(targets)
            return
        result = await read_all(
            targets,
            backend=self._backend,
            events=self._events,
            settings=self._settings.ble,
            read=self._read_speaker,
        )
        if self._ended():
            raise _Interrupted
        self.summary.reads_ok += len(result.infos)
        self.summary.reads_failed += len(result.errors)
        self._read.update(address.upper() for address in result.infos)
        for info in result.infos.values():
            self.device_info.on_info(info)

    async def _slots_kept_for_good(self, polled: int) -> bool:
        """Whether this agent's kept sessions hold every slot a polled read could use.

        "For good": each adapter a poll could go through (``ble.adapters``, else ``ble.adapter``)
        has as many slots held by kept sessions whose link is up as its effective limit (the
        controller's own limit where the stack reports one). The agent lets such a session go
        only between cycles (an unbind, a withdrawal, the end), so no slot comes free for this
        cycle's polls but by a link going down. Slots held by anyone else — another program, a
        library user's session, a kept session still connecting — may come free: those polls
        keep the bounded wait (``ble.slot_timeout``). The state is logged when it changes: one
        WARNING when polls start being skipped, one INFO when a slot is free again.
        """
        ble = self._settings.ble
        connected = self.sessions.connected()
        names: list[str | None] = list(ble.adapters) if ble.adapters else [ble.adapter]
        full: list[str] = []
        if connected:
            for name in names:
                limiter = limiter_for(self._backend, ble.max_connections, adapter=name)
                await limiter.read()
                held = limiter.held_by(connected)
                if held < limiter.effective_limit:
                    break
                full.append(f"{name or 'the default adapter'} ({limiter.effective_limit})")
        state = ", ".join(full) if len(full) == len(names) else None
        if state != self._no_slot:
            if state is not None:
                _LOGGER.warning(
                    "polled reads skipped: every connection slot of %s is held by a speaker "
                    "this agent keeps connected; %d polled speakers are not read until a slot is "
                    "free (set ble.max_connections to the adapter's slots so one stays free)",
                    state,
                    polled,
                )
            else:
                _LOGGER.info(
                    "polled reads resume: this agent's kept sessions no longer hold every "
                    "connection slot"
                )
            self._no_slot = state
        return state is not None

    async def _read_kept(self, kept: set[str]) -> None:
        """Read the kept speakers over their open links (new ones get one connection attempt)."""
        if not kept:
            return
        ble = self._settings.ble
        await self.sessions.settled(ble.connect_timeout * ble.connect_attempts + ble.scan_timeout)
        for address in sorted(kept):
            if self._ended():
                raise _Interrupted
            if address not in self.sessions.connected():
                self.summary.reads_failed += 1
                error = self.sessions.last_error(address)
                _LOGGER.debug("kept %s is not connected: %s", address, error)
                continue
            try:
                info = await self._read_speaker(self.sessions.session(address))
            except BluetoothError as exc:
                self.summary.reads_failed += 1
                _LOGGER.debug("reading kept %s failed: %s", address, exc)
                continue
            self.summary.reads_ok += 1
            self._read.add(address)
            self.device_info.on_info(info)

    def _bound_addresses(self) -> set[str]:
        if self._bound is None:
            return set()
        if callable(self._bound):
            return self._bound()
        return self._bound

    async def _read_speaker(self, speaker: Speaker) -> Any:
        """Read one speaker; an unexpected exception is that speaker's error, not the cycle's."""
        try:
            return await speaker.read_info()
        except (BluetoothError, asyncio.CancelledError):
            raise
        except Exception as exc:
            self._failed("speaker", exc)
            raise BluetoothError(
                f"reading the speaker failed: unexpected {type(exc).__name__}"
            ) from exc
