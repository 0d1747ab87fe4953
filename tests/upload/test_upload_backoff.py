"""Backoff windows, full jitter, Retry-After parsing (time and randomness injected)."""

from __future__ import annotations

import email.utils
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wking_device.errors import UsageError
from wking_device.upload import BackoffPolicy, parse_retry_after

NOW = 1_800_000_000.0


def test_windows_double_up_to_the_cap() -> None:
    policy = BackoffPolicy(base=0.5, cap=10.0)
    assert [policy.window(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy.window(10_000) == 10.0


@given(attempt=st.integers(0, 2000), seed=st.integers())
def test_full_jitter_stays_in_the_window(attempt: int, seed: int) -> None:
    policy = BackoffPolicy(base=0.5, cap=30.0)
    delay = policy.delay(attempt, rng=random.Random(seed))
    assert 0.0 <= delay <= policy.window(attempt)


def test_jitter_spreads_and_is_reproducible() -> None:
    policy = BackoffPolicy(base=1.0, cap=60.0)
    delays = [policy.delay(5, rng=random.Random(seed)) for seed in range(50)]
    assert len(set(delays)) == 50
    assert policy.delay(5, rng=random.Random(3)) == policy.delay(5, rng=random.Random(3))


def test_retry_after_is_a_floor_and_capped() -> None:
    policy = BackoffPolicy(base=0.1, cap=1.0, max_retry_after=300.0)
    assert policy.delay(0, retry_after=30.0, rng=random.Random(1)) == 30.0
    assert policy.delay(0, retry_after=10_000.0, rng=random.Random(1)) == 300.0


def test_a_bad_policy_is_refused() -> None:
    with pytest.raises(UsageError):
        BackoffPolicy(base=0.0)
    with pytest.raises(UsageError):
        BackoffPolicy(base=2.0, cap=1.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        (email.utils.formatdate(NOW + 42, usegmt=True), 42.0),
        (email.utils.formatdate(NOW - 42, usegmt=True), 0.0),  # in the past: now
        ("99999999", 86400.0),  # clamped to a day
        ("-5", None),
        ("1.5", None),
        ("9" * 5000, 86400.0),  # past Python's int() digit limit: still a huge wait, clamped
        ("\u00b2", None),  # str.isdigit() but not an RFC 9110 DIGIT
        ("\u0661\u0662", None),  # Arabic-Indic digits: not ASCII DIGITs
        ("+5", None),
        ("tomorrow", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_values(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected
