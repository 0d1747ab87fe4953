"""The systemd notification protocol (``sd_notify``) for ``wking agent run`` under ``Type=notify``.

This module owns the client side of the protocol, with the standard library only: it reads
``NOTIFY_SOCKET`` (a file-system path, or ``@name`` in the abstract namespace), sends one
``AF_UNIX`` datagram per message, and works out the watchdog interval from ``WATCHDOG_USEC`` (and
``WATCHDOG_PID``, which must be this process when set). It sends nothing when ``NOTIFY_SOCKET``
is unset: outside systemd it does nothing at all.

It does not decide *when* the agent is ready or stopping: the CLI (``cli/_agent.py``) says so.
The watchdog is kept by a task of the agent's event loop, so a loop that hangs stops the pings
and systemd restarts the service (``WatchdogSec=`` in the unit). A failure to send is logged and
never stops the agent: the service manager's view is a convenience, not a precondition. Sending
never blocks (a service manager that stops reading cannot stall the event loop).

Messages (``man sd_notify``): ``READY=1`` once the agent runs, ``WATCHDOG=1`` every half
watchdog period, ``STOPPING=1`` when asked to stop, and ``STATUS=...`` lines shown by
``systemctl status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["SystemdNotifier"]

_LOGGER = logging.getLogger(__name__)

_MAX_STATUS = 200  # characters of a STATUS= line; systemctl shows one line


class SystemdNotifier:
    """Sends state changes to systemd over its notification socket.

    Build it with :meth:`from_environment`, which returns ``None`` outside a notify service.

    Args:
        address: The socket address as :func:`socket.socket.sendto` takes it (a path, or a
            string starting with a NUL character for the abstract namespace).
        watchdog_s: Seconds between watchdog pings (half of ``WATCHDOG_USEC``), or ``None``.
    """

    def __init__(self, address: str, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, pid: int | None = None
    ) -> SystemdNotifier | None:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``.

        Args:
            environ: The environment (defaults to ``os.environ``).
            pid: This process's id (defaults to :func:`os.getpid`).

        Returns:
            A notifier, or ``None`` when ``NOTIFY_SOCKET`` is unset, empty or not a Unix socket
            address (a ``vsock:`` address is not supported and is logged).
        """
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        if not raw:
            return None
        if raw.startswith("@"):
            address = "\0" + raw[1:]  # the abstract namespace
        elif raw.startswith("/"):
            address = raw
        else:
            _LOGGER.warning("NOTIFY_SOCKET is not a Unix socket address; not notifying systemd")
            return None
        return cls(address, _watchdog_interval(env, os.getpid() if pid is None else pid))

    def notify(self, *lines: str) -> bool:
        """Send one message of ``KEY=value`` lines.

        Never blocks: when systemd's queue is full the message is dropped (the next watchdog ping
        or status line is sent again anyway).

        Returns:
            Whether the datagram was sent (a failure is logged once, at WARNING).
        """
        message = "\n".join(lines).encode("utf-8", "backslashreplace")
        try:
            if self._sock is None:
                # non-blocking: this runs on the agent's event loop, and a service manager that
                # does not read (its queue full) must not stall every speaker session
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(0.0)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                _LOGGER.warning("cannot notify systemd: %s", exc.strerror or exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        """Tell systemd the service is up (``READY=1``), with a status line."""
        return self.notify("READY=1", _status(status))

    def stopping(self, status: str) -> bool:
        """Tell systemd the service is stopping (``STOPPING=1``), with a status line."""
        return self.notify("STOPPING=1", _status(status))

    def status(self, status: str) -> bool:
        """Update the line ``systemctl status`` shows (``STATUS=``)."""
        return self.notify(_status(status))

    async def keep_watchdog(self, describe: Callable[[], str] | None = None) -> None:
        """Ping the watchdog (``WATCHDOG=1``) every :attr:`watchdog_s` until cancelled.

        Returns at once when there is no watchdog.

        Args:
            describe: Gives a status line sent with every ping (the agent's counters).
        """
        if self.watchdog_s is None:
            return
        while True:
            lines = ["WATCHDOG=1"]
            if describe is not None:
                with contextlib.suppress(Exception):  # a status line is never worth a restart
                    lines.append(_status(describe()))
            self.notify(*lines)
            await asyncio.sleep(self.watchdog_s)

    def close(self) -> None:
        """Close the socket (a later message opens it again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> str:
    one_line = " ".join(text.split())[:_MAX_STATUS]
    return f"STATUS={one_line}"


def _watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Half the watchdog period in seconds, or ``None`` when there is none for this process."""
    raw = env.get("WATCHDOG_USEC", "")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        _LOGGER.warning("WATCHDOG_USEC is not a number; not pinging the watchdog")
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "")
    if owner:
        try:
            if int(owner) != pid:
                return None  # the watchdog is another process's (a parent that exec'd us)
        except ValueError:
            return None
    return usec / 2 / 1_000_000
