"""The conformance bench: one device to test BlueZ behaviour against, simulated or real.

Every test in this directory takes the ``bench`` fixture and runs twice: against a simulated
world (always), and against a real adapter through bleak's platform backend (BlueZ on Linux),
marked ``hardware`` and so skipped unless ``pytest --hardware``. Set ``WKING_TEST_ADDRESS`` to
the speaker to use; otherwise the strongest W-KING speaker in range is picked. Checks that need
the peripheral's side of the link (what the speaker saw) run on the simulator only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from bleak import BleakClient

from wking_device.sim import SimWorld

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from bleak.backends.client import BaseBleakClient
    from bleak.backends.scanner import BaseBleakScanner

    from wking_device.sim import SimSpeaker

# read at collection: the autouse fixture clears WKING_* variables before each test
_ADDRESS = os.environ.get("WKING_TEST_ADDRESS")
#: A random static address no test device uses (nothing advertises it).
ABSENT_ADDRESS = "F3:9A:11:C0:FF:EE"


@dataclass
class Bench:
    """What a conformance test runs against.

    Attributes:
        scanner: ``backend=`` for ``BleakScanner`` (``None``: the platform's, BlueZ on Linux).
        client: ``backend=`` for ``BleakClient``.
        address: A device that advertises and accepts connections.
        absent: An address nothing advertises.
        world: The simulated world, or ``None`` on hardware.
    """

    scanner: type[BaseBleakScanner] | None
    client: type[BaseBleakClient] | None
    address: str
    absent: str
    world: SimWorld | None

    @property
    def speaker(self) -> SimSpeaker:
        """The simulated speaker at :attr:`address`; skips the test on hardware."""
        if self.world is None:
            pytest.skip("needs the peripheral's side of the link (simulator only)")
        return self.world.speaker(self.address)

    def bleak_client(self, target: Any = None, **kwargs: Any) -> BleakClient:
        """A ``BleakClient`` for ``target`` (default: :attr:`address`) on this bench."""
        kwargs.setdefault("timeout", 10.0 if self.world is None else 5.0)
        return BleakClient(
            self.address if target is None else target, backend=self.client, **kwargs
        )


async def _hardware_address() -> str:
    if _ADDRESS:
        return _ADDRESS
    from wking_device.ble import discover  # noqa: PLC0415 - only with --hardware

    found = await discover(10.0, count=1)
    assert found, "no W-KING speaker advertised within 10 s"
    return found[0].address


@pytest.fixture(name="bench", params=["sim", pytest.param("hardware", marks=pytest.mark.hardware)])
async def fixture_bench(request: pytest.FixtureRequest) -> AsyncIterator[Bench]:
    if request.param == "hardware":
        yield Bench(None, None, await _hardware_address(), ABSENT_ADDRESS, None)
        return
    async with SimWorld.fleet(2, adv_interval_ms=20) as world:
        yield Bench(
            world.backend.scanner,
            world.backend.client,
            world.speakers[0].address,
            ABSENT_ADDRESS,
            world,
        )
