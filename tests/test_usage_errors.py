"""A public constructor or call given a value that makes no sense raises a UsageError.

errors.py promises that every error this package raises is a ``WkingError``; these raised
``ValueError``/``RuntimeError`` (which a caller catching ``WkingError`` let through).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wking_device.bindings import Bindings
from wking_device.ble import ConnectionLimiter, RetryPolicy, acquire_first
from wking_device.errors import UsageError
from wking_device.receiver import Receiver
from wking_device.upload import BackoffPolicy, Uploader


def _uploader(**kw: Any) -> Callable[[], object]:
    return lambda: Uploader(None, None, None, installation_id="ab" * 16, **kw)  # type: ignore[arg-type]


CASES: dict[str, tuple[Callable[[], object], str]] = {
    "RetryPolicy(attempts=0)": (lambda: RetryPolicy(attempts=0), "attempts"),
    "RetryPolicy(jitter=-1)": (lambda: RetryPolicy(jitter=-1), "jitter"),
    "ConnectionLimiter(0)": (lambda: ConnectionLimiter(0), "limit"),
    "ConnectionLimiter().release()": (lambda: ConnectionLimiter(1).release(), "release"),
    "acquire_first([])": (lambda: asyncio.run(acquire_first([], "A")), "limiter"),
    "BackoffPolicy(base=0)": (lambda: BackoffPolicy(base=0.0), "base"),
    "BackoffPolicy(cap<base)": (lambda: BackoffPolicy(base=2.0, cap=1.0), "cap"),
    "BackoffPolicy().window(-1)": (lambda: BackoffPolicy().window(-1), "attempt"),
    "Uploader(batch_size=0)": (_uploader(batch_size=0), "batch_size"),
    "Uploader(concurrency=0)": (_uploader(concurrency=0), "concurrency"),
    "Uploader(max_attempts=0)": (_uploader(max_attempts=0), "max_attempts"),
    "Bindings(key=short)": (lambda: Bindings(Path("bindings.bin"), b"short"), "key"),
    "Receiver().port before start": (lambda: Receiver(Path("rx")).port, "start"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_senseless_value_is_a_usage_error(case: str) -> None:
    call, word = CASES[case]
    with pytest.raises(UsageError, match=word):
        call()


@pytest.mark.parametrize("interval", [0, -1.0, float("nan"), float("inf"), "1", None])
async def test_a_periodic_loop_refuses_an_interval_that_is_not_positive_seconds(
    interval: object, home: Path
) -> None:
    from wking_device.collect import MemorySink, OperationLogCollector  # noqa: PLC0415
    from wking_device.collect._install import open_installation_gate  # noqa: PLC0415
    from wking_device.config import load_settings, resolve_paths  # noqa: PLC0415

    up = Uploader(None, None, None, installation_id="ab" * 16)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="interval"):
        async with asyncio.timeout(10):  # 0 was a busy loop: this bounds the failure
            await up.run(interval)  # type: ignore[arg-type]
    paths = resolve_paths(home)
    paths.ensure()
    gate = open_installation_gate(paths, load_settings(paths))
    collector = OperationLogCollector(gate, MemorySink())
    with pytest.raises(UsageError, match="interval"):
        async with asyncio.timeout(10):
            await collector.run(interval)  # type: ignore[arg-type]
    await collector.aclose()
