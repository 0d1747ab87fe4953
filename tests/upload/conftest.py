"""The reference receiver as a fixture (a real TLS server on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wking_device.receiver import Receiver


@pytest.fixture(name="receiver")
async def fixture_receiver(tmp_path: Path) -> AsyncIterator[Receiver]:
    async with Receiver(tmp_path / "rx") as rx:
        yield rx
