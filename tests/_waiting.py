"""Waiting on a condition in tests: polled every 10 ms, bounded, never a fixed sleep."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable


async def until(condition: Callable[[], bool], within: float = 10.0, every: float = 0.01) -> None:
    """Return once ``condition()`` holds (looked at every ``every`` seconds); fail the test
    after ``within`` seconds. A condition that holds only for a moment needs a short ``every``.
    """
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(every)
