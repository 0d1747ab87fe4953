"""The running event loop, for code that asks once per record.

On Python 3.11, :func:`asyncio.get_running_loop` makes a ``getpid()`` system call on every call
(to notice a fork). The store asks for the running loop in every ``append``; with a writer
process busy on the other core, that call cost the event loop ≈ 1 µs of its ≈ 16 µs per record
at 1,000 producers (benchmarks/ingest.py, four alternating pairs). Python 3.12 dropped the
system call, and there :func:`running_loop` is :func:`asyncio.get_running_loop` itself.

This module owns :func:`running_loop` and nothing else. It keeps, per thread, the last loop it
found, and returns it again only while that loop runs in this thread (asyncio runs at most one
loop per thread at a time), as asyncio's own ``run_forever`` records it; a forked child forgets
it; a loop that runs itself otherwise (uvloop) is looked up with asyncio each time. Code that
clears asyncio's running loop (its private ``_set_running_loop``) to run another loop inside a
running one is not supported: the outer loop, still running in this thread, is returned. It does
not manage loops.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["running_loop"]


def _none() -> None:
    return None


class _Last(threading.local):
    loop: Callable[[], asyncio.AbstractEventLoop | None] = staticmethod(_none)
    """A weak reference: a thread's last loop is not kept alive once it is dropped."""


_LAST = _Last()
_get_ident = threading.get_ident
_RUN_FOREVER = asyncio.BaseEventLoop.run_forever


def _running_loop_311() -> asyncio.AbstractEventLoop:
    """:func:`asyncio.get_running_loop`, without its system call while the same loop runs.

    Raises:
        RuntimeError: No event loop is running in this thread.
    """
    loop = _LAST.loop()
    # a BaseEventLoop records the thread that runs it (None once it stops): the loop is this
    # thread's running loop exactly when that is this thread; other loops ask asyncio each time
    if loop is not None and getattr(loop, "_thread_id", None) == _get_ident():
        return loop
    loop = asyncio.get_running_loop()
    if type(loop).run_forever is _RUN_FOREVER:
        # only a loop that runs through asyncio's own run_forever, which sets and clears
        # _thread_id; for any other (uvloop, a loop that runs itself) asyncio is asked each time
        _LAST.loop = weakref.ref(loop)
    return loop


def _forget() -> None:
    _LAST.loop = _none  # in a forked child the parent's loop does not run


running_loop: Callable[[], asyncio.AbstractEventLoop]
if sys.version_info >= (3, 12):
    running_loop = asyncio.get_running_loop
else:  # pragma: no cover - one branch per interpreter
    running_loop = _running_loop_311
    os.register_at_fork(after_in_child=_forget)
