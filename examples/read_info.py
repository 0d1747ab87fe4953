"""Connect to a speaker and read its information (Device Information, Battery, vendor state).

Runs against simulated speakers; pass --real (and an address) to use the Bluetooth adapter.
"""

from __future__ import annotations

import asyncio

from _common import backend_for, exit_on_error, first_speaker, parse_args, shown

from wking_device.ble import Speaker


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0], address=True)
    async with backend_for(args) as backend:
        target = args.address or await first_speaker(backend)
        async with Speaker(target, backend=backend) as speaker:
            info = await speaker.read_info()
    for key, value in info.model_dump().items():
        print(f"{key:13} {shown(value)}")  # strings chosen by the speaker: escaped


if __name__ == "__main__":
    with exit_on_error():
        asyncio.run(main())
