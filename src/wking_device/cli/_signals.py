"""SIGINT and SIGTERM of the ``wking`` process: recorded from the start, acted on by the command.

From the moment :func:`wking_device.cli.main` starts until a command takes over, and again once
the command is done and the process exits with its code, both signals are recorded instead of
acted on, so a Ctrl-C while the command line is parsed is not a traceback. Every command but
``agent run`` gets the default behaviour back (:func:`default_behaviour`): Ctrl-C ends it with
``interrupted`` and exit 130, SIGTERM ends the process; a signal recorded so far takes effect at
that moment. ``agent run`` keeps them and stops the agent gracefully
(:mod:`wking_device.cli._agent`).

A signal that arrives while Python itself is still starting (before ``main`` runs, about the first
0.3 s) has the operating system's default effect. A Ctrl-C that lands where Python cannot raise
it (a weak-reference callback or a finaliser, run by the garbage collector at any moment) is
delivered again rather than dropped with a traceback (:func:`keep_interrupts`).
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["SIGNALS", "default_behaviour", "defer", "keep_interrupts", "record", "take"]

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


def keep_interrupts() -> None:
    """Have a Ctrl-C that Python would drop delivered again (``wking``'s own process only).

    Installs a ``sys.unraisablehook`` that handles ``KeyboardInterrupt`` and hands anything
    else to the hook it replaces (a library must not change it for its host, so only
    :func:`wking_device.cli.main` calls this).
    """
    global _previous_hook  # noqa: PLW0603 - the one hook this process had before
    if sys.unraisablehook is not _unraisable:
        _previous_hook = sys.unraisablehook
        sys.unraisablehook = _unraisable


_previous_hook: Callable[[Any], object] = sys.__unraisablehook__


def _unraisable(unraisable: Any) -> None:
    """A Ctrl-C that landed in a callback Python cannot raise from is delivered again.

    A ``KeyboardInterrupt`` raised inside a weak-reference callback or a finaliser (the import
    system's module locks have one; the garbage collector runs them at any moment) cannot
    propagate: Python prints ``Exception ignored in ...`` with a traceback and drops the
    interrupt. It is sent again as a signal instead, from another thread once this hook has
    returned (sent from here, the handler would raise inside the hook), and the current handler
    receives it at the next step of the main thread: the command ends with ``interrupted``, exit
    130 (while signals are recorded, it is recorded). Anything else goes to the hook before.
    """
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        # to the main thread (a wait there ends at once), from a thread started with _thread:
        # threading.Thread.start() waits for it, and the signal could land inside this hook
        main = threading.main_thread().ident
        if main is not None:
            _thread.start_new_thread(_deliver_when_out, (main,))
        return
    _previous_hook(unraisable)


def _deliver_when_out(main: int) -> None:
    """SIGINT to the main thread once it has left :func:`_unraisable` (from its own thread).

    Sent while the main thread is still in the hook (this thread can get the GIL before the
    hook returns: a loaded machine), the ``KeyboardInterrupt`` would be raised inside the hook,
    where Python drops it again: the Ctrl-C was lost (seen once in CI). Waits at most ~1 s.
    """
    for _ in range(1000):
        frame = sys._current_frames().get(main)
        while frame is not None and frame.f_code is not _unraisable.__code__:
            frame = frame.f_back
        if frame is None:
            break
        time.sleep(0.001)
    signal.pthread_kill(main, signal.SIGINT)


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
