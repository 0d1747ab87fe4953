"""The agent's watch on consent: grants, withdrawals, Do Not Track and a tampered ledger.

This module owns :class:`AgentConsent`, the base of :class:`~wking_device.agent.Agent` that
keeps a run in step with consent given or withdrawn elsewhere: polling the ledger (every
``consent_poll`` seconds, and at the start of each cycle) for other processes' grants,
withdrawals and ``dnt_on``, latching Do Not Track turned on by another process for the rest of
the run, applying this process's own Do Not Track (the environment, and ``config.toml`` re-read
when it changes, see :class:`_ConfigDoNotTrack`), ending the run on a ledger that fails
verification, and telling whether anything the radio could produce may be kept. It does not
grant, withdraw, verify or purge anything itself (:mod:`wking_device.consent` and the store
attached to the gate do), and does not scan, read or supervise (see :mod:`._cycle`,
:mod:`._supervision`); the state it uses is initialised by ``Agent.__init__``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from wking_device.agent._supervision import AgentSupervision
from wking_device.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from wking_device.agent._status import StatusWriter
    from wking_device.config import Paths, Settings
    from wking_device.consent import ConsentGate
    from wking_device.errors import AdapterUnavailable, LedgerTampered

__all__ = ["AgentConsent"]

_LOGGER = logging.getLogger(__name__)

# The collectors whose data comes from speakers: with none of them active, the agent neither
# scans nor connects (software and location snapshots need no radio, and diagnostics alone is no
# reason to connect to anyone).
_RADIO_COLLECTORS = ("operations", "device_info")


class _ConfigDoNotTrack:
    """Whether the settings say Do Not Track now: ``config.toml`` is re-read when it changes (stat).

    The environment counts too (it does not change while the process runs). So do the settings
    the agent was given, when they say on and the file and the environment do not (settings made
    in code): that is a source of its own, which no change to the file switches off. Settings
    that say off do not hide a file that says on.

    A file that cannot be read or parsed counts as Do Not Track on (fail closed) until it is
    fixed, with one warning per change.
    """

    def __init__(self, paths: Paths, settings: Settings) -> None:
        self._paths = paths
        self._stamp = self._disk_stamp()
        self._value = self._read()  # the file and the environment as they are now
        self._own = settings.do_not_track and not self._value
        """The settings' own Do Not Track (made in code): on for the whole run."""

    def _disk_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = self._paths.config_file.stat()
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def _read(self) -> bool:
        from wking_device.config import load_settings  # noqa: PLC0415 - avoids an import cycle

        try:
            return load_settings(self._paths).do_not_track
        except ConfigError as exc:
            _LOGGER.warning(
                "the configuration cannot be read (%s): Do Not Track is taken as on", exc
            )
            return True

    def __call__(self) -> bool:
        stamp = self._disk_stamp()
        if stamp != self._stamp:
            self._stamp = stamp
            self._value = self._read()
        return self._own or self._value


class AgentConsent(AgentSupervision):
    """The consent watch of an :class:`~wking_device.agent.Agent` (a base class; see the module)."""

    if TYPE_CHECKING:  # initialised by Agent.__init__; no annotations at run time
        _gate: ConsentGate
        _consent_poll: float
        _failure: LedgerTampered | AdapterUnavailable | None
        _own_dnt: Callable[[], bool]
        _dnt_latched: bool
        _dnt_applied: bool
        _history_seen: int
        _status: StatusWriter | None
        _shown_active: list[str]

        # Provided by Agent: the status file.

        def _active(self) -> list[str]: ...

        def _write_status(self, state: str) -> None: ...

    async def _watch_consent(self) -> None:
        """Pick up grants, withdrawals and Do Not Track set elsewhere (``wking consent …``).

        A withdrawal found here revokes the permits at once: collectors stop and the store,
        attached to the gate, crypto-shreds the category. A ledger that fails verification ends
        the run (one ERROR; it is not read again).
        """
        pause = self._consent_poll
        while self._failure is None:
            await asyncio.sleep(pause)
            try:
                self._poll_consent()
            except Exception as exc:  # noqa: BLE001 - an unreadable ledger is retried later
                pause = min(self._failed("consent", exc), self._consent_poll * 8)
            else:
                self._recovered("consent")
                pause = self._consent_poll
            # a grant or withdrawal shows in the status at once
            if self._status is not None and self._active() != self._shown_active:
                self._write_status("running")

    def _poll_consent(self) -> None:
        """Re-read the ledger (when it changed) and the Do Not Track sources; stop on tampering."""
        if self._failure is not None:
            return
        self._gate.refresh()
        if self._check_tampered():
            return
        history = self._gate.history()
        fresh, self._history_seen = history[self._history_seen :], len(history)
        if not self._dnt_latched and any(entry.event == "dnt_on" for entry in fresh):
            self._dnt_latched = True
            _LOGGER.warning(
                "Do Not Track was turned on by another process: collecting nothing until the "
                "agent is restarted"
            )
        self._apply_do_not_track()

    def _apply_do_not_track(self) -> None:
        wanted = self._own_dnt() or self._dnt_latched
        if wanted == self._dnt_applied:
            return
        self._dnt_applied = wanted
        _LOGGER.warning(
            "Do Not Track is %s: %s",
            "on" if wanted else "off",
            "collecting nothing" if wanted else "collecting what is granted again",
        )
        self._gate.set_do_not_track(wanted)
        self._history_seen = len(self._gate.history())  # our own dnt_on/dnt_off: not a latch
        self._check_tampered()

    def _check_tampered(self) -> bool:
        """End the run, with one ERROR, if the ledger failed verification."""
        tampered = self._gate.tampered
        if tampered is None:
            return False
        if self._failure is None:
            _LOGGER.error("collecting nothing and stopping: %s", tampered)
            self._failure = tampered
            self._stop.set()
        return True

    def _may_keep_anything(self) -> bool:
        """Whether a scan or a connection could produce a record anyone may keep."""
        return any(getattr(self, name).active for name in _RADIO_COLLECTORS)
