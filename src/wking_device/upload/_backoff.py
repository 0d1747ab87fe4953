"""Retry timing: exponential backoff with full jitter, a cap, and ``Retry-After``.

Pure functions and a small frozen policy: no sleeping and no clock of their own (the caller passes
the random source and "now"), so the uploader's tests control time (STYLE §5). This module does
not decide *whether* to retry; the sender's result says that.
"""

from __future__ import annotations

import email.utils
import math
import random
from dataclasses import dataclass

from wking_device.errors import UsageError

__all__ = ["BackoffPolicy", "parse_retry_after"]

_MAX_RETRY_AFTER = 24 * 3600.0  # an absurd Retry-After is clamped rather than obeyed for days


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffPolicy:
    """Exponential backoff with full jitter ("Exponential Backoff And Jitter", AWS, 2015).

    Attempt ``n`` (0-based) waits a uniform random time in ``[0, min(cap, base * 2**n)]``; a
    collector's ``Retry-After`` is a floor (never retry earlier than asked), itself capped at
    ``max_retry_after``.

    Attributes:
        base: Seconds of the first window.
        cap: Largest window, seconds.
        max_retry_after: Largest ``Retry-After`` honoured, seconds.
    """

    base: float = 0.5
    cap: float = 60.0
    max_retry_after: float = 3600.0

    def __post_init__(self) -> None:
        if not (self.base > 0 and self.cap >= self.base and self.max_retry_after >= 0):
            raise UsageError(
                "BackoffPolicy needs 0 < base <= cap and max_retry_after >= 0, not "
                f"base={self.base}, cap={self.cap}, max_retry_after={self.max_retry_after}"
            )

    def window(self, attempt: int) -> float:
        """The upper bound of the wait before retry number ``attempt`` (0-based)."""
        if attempt < 0:
            raise UsageError(f"attempt must be >= 0, not {attempt}")
        # 2**attempt overflows a float near 1024: the cap is reached long before
        exponent = min(attempt, 1023)
        return min(self.cap, self.base * math.ldexp(1.0, exponent))

    def delay(
        self,
        attempt: int,
        *,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds to wait before retry number ``attempt``.

        Args:
            attempt: 0 for the first retry, then 1, 2, ...
            retry_after: The collector's ``Retry-After`` in seconds, when it sent one.
            rng: The random source (inject a seeded one in tests).

        Returns:
            The delay: full-jitter backoff, but never less than ``retry_after`` (capped).
        """
        jittered = (rng or random).uniform(0.0, self.window(attempt))
        if retry_after is None:
            return jittered
        return max(jittered, min(max(retry_after, 0.0), self.max_retry_after))


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Parse an HTTP ``Retry-After`` value (RFC 9110 §10.2.3) into seconds from ``now``.

    Args:
        value: The header value: delta-seconds (``"120"``) or an HTTP-date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``).
        now: The current wall-clock time, seconds since the epoch (injected).

    Returns:
        Seconds to wait (0 for a date in the past), at most a day; ``None`` when absent or
        unparseable (the caller then uses its own backoff).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        # RFC 9110 delta-seconds are ASCII digits (str.isdigit() also takes "²", which int()
        # refuses); more digits than a day has are a day (int() refuses over 4,300 digits)
        digits = text.lstrip("0")[: len(str(int(_MAX_RETRY_AFTER))) + 1] or "0"
        return min(float(int(digits)), _MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" / no zone: RFC 9110 dates are GMT
        return None
    return min(max(when.timestamp() - now, 0.0), _MAX_RETRY_AFTER)
