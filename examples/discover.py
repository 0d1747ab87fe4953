"""Discover W-KING speakers and print what their advertisements say.

Runs against three simulated speakers; pass --real to scan with the Bluetooth adapter.
"""

from __future__ import annotations

import asyncio

from _common import backend_for, exit_on_error, parse_args, shown

from wking_device.ble import discover


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    async with backend_for(args) as backend:
        speakers = await discover(3.0, backend=backend)
    for speaker in speakers:
        model = shown(speaker.model or "?")
        print(f"{speaker.address}  {speaker.rssi:4d} dBm  {model:8}  {shown(speaker.name)}")
    if not speakers:
        print("no W-KING speakers found")


if __name__ == "__main__":
    with exit_on_error():
        asyncio.run(main())
