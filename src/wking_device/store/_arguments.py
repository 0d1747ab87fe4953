"""Checks of the values a caller passes to :class:`~wking_device.store.RecordStore`'s methods.

Owns turning a wrong type into a :class:`~wking_device.errors.UsageError` that names the
argument, before anything is queued for the writer. Does not own the store's state checks
(closed, read-only) or the append path's record and permit checks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

from wking_device.errors import UsageError

_LOGGER = logging.getLogger(__name__)


def names(
    values: Iterable[str] | None, argument: str, example: str, *, optional: bool = True
) -> list[str] | None:
    """``values`` as a list, refusing one string (which would be iterated as its characters).

    Args:
        values: What the caller passed (``None`` passes through when ``optional``).
        argument: The parameter's name, for the error.
        example: A call that does it right, for the remedy.
        optional: Whether ``None`` is allowed.

    Raises:
        UsageError: ``values`` is a ``str`` or ``bytes``, or not iterable (or ``None``, when
            not ``optional``).
    """
    if values is None and optional:
        return None
    if isinstance(values, str | bytes):
        raise UsageError(
            f"{argument} must be a list of strings, not one string",
            remedy=f"wrap it in a list: {example}",
        )
    try:
        return list(values)  # type: ignore[arg-type] # None raises TypeError: refused below
    except TypeError:
        raise UsageError(
            f"{argument} must be a list of strings, not {type(values).__name__}",
            remedy=f"pass a list: {example}",
        ) from None


def count(n: object, argument: str = "n") -> int:
    """``n`` when it is an ``int`` (not a ``bool``); :class:`UsageError` otherwise."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise UsageError(f"{argument} must be an int, not {type(n).__name__}")
    return n


def positive(n: object, argument: str) -> int:
    """``n`` when it is an ``int`` of at least 1 (not a ``bool``); :class:`UsageError` otherwise."""
    checked = count(n, argument)
    if checked < 1:
        raise UsageError(f"{argument} must be at least 1, not {checked}")
    return checked


def instant(value: object, argument: str) -> float | None:
    """``value`` when it is ``None`` or a finite number of seconds (not a ``bool``).

    Raises:
        UsageError: Anything else (a string, NaN, an infinity: ``inf`` would be a time after
            every expiry).
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"{argument} must be a finite number of seconds (UTC), not {value!r}")
    return float(value)


def category(value: object) -> str:
    """``value`` when it is a ``str``; :class:`UsageError` naming ``category`` otherwise."""
    if not isinstance(value, str):
        raise UsageError(
            f"category must be one category name (a str), not {type(value).__name__}",
            remedy="purge categories one by one: await store.purge('operation_logs')",
        )
    return value
