"""Shared by the examples: run against the simulator by default, or a real adapter (--real)."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from wking_device.ble import BleBackend, DiscoveredSpeaker


def parse_args(description: str, *, address: bool = False) -> argparse.Namespace:
    """Parse the examples' common options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--real", action="store_true", help="use the Bluetooth adapter")
    parser.add_argument("--speakers", type=int, default=3, help="simulated speakers")
    if address:
        parser.add_argument("address", nargs="?", help="speaker address (default: first found)")
    return parser.parse_args()


@contextlib.asynccontextmanager
async def backend_for(args: argparse.Namespace) -> AsyncIterator[BleBackend | None]:
    """A simulated world's backend, or ``None`` (bleak's platform default) with --real."""
    if args.real:
        yield None
        return
    from wking_device.sim import SimWorld

    async with SimWorld.fleet(args.speakers) as world:
        yield world.backend


async def first_speaker(backend: BleBackend | None) -> DiscoveredSpeaker:
    """The first W-KING speaker that advertises; exits with a message when none does."""
    from wking_device.ble import discover

    found = await discover(3.0, backend=backend, count=1)
    if not found:
        raise SystemExit("no W-KING speaker found; is one switched on and nearby?")
    return found[0]
