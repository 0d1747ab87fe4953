"""SIGINT and SIGTERM of the ``wking`` process: recorded from the start, acted on by the command.

From the moment :func:`wking_device.cli.main` starts until a command takes over, and again once
the command is done and the process exits with its code, both signals are recorded instead of
acted on, so a Ctrl-C while the command line is parsed is not a traceback. Every command but
``agent run`` gets the default behaviour back (:func:`default_behaviour`): Ctrl-C ends it with
``interrupted`` and exit 130, SIGTERM ends the process; a signal recorded so far takes effect at
that moment. ``agent run`` keeps them and stops the agent gracefully
(:mod:`wking_device.cli._agent`).

A signal that arrives while Python itself is still starting (before ``main`` runs, about the first
0.3 s) has the operating system's default effect.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

__all__ = ["SIGNALS", "default_behaviour", "defer", "record", "take"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals the ``wking`` command handles."""

_received: list[signal.Signals] = []


def record(signum: int, frame: Any) -> None:
    """A signal handler that only records the signal (see :func:`take`)."""
    del frame
    _received.append(signal.Signals(signum))


def take() -> list[signal.Signals]:
    """Return the signals recorded so far, and forget them."""
    taken = list(_received)
    _received.clear()
    return taken


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def defer() -> None:
    """Record SIGINT and SIGTERM from now on (main thread only; elsewhere nothing changes)."""
    if not _main_thread():
        return
    _received.clear()
    for sig in SIGNALS:
        signal.signal(sig, record)


def default_behaviour() -> None:
    """Give Ctrl-C and SIGTERM their usual effect; one recorded so far takes effect now.

    Ctrl-C raises ``KeyboardInterrupt`` (the command prints ``interrupted`` and exits 130;
    :func:`asyncio.run` first cancels its task, so the command cleans up); SIGTERM ends the
    process.

    Raises:
        KeyboardInterrupt: Ctrl-C was pressed before the command started.
    """
    if not _main_thread():
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    pending = take()
    if signal.SIGTERM in pending:
        os.kill(os.getpid(), signal.SIGTERM)
    if signal.SIGINT in pending:
        raise KeyboardInterrupt
