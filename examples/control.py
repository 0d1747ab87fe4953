"""Control a speaker: volume, EQ preset and light mode, and watch its notifications.

Runs against simulated speakers; pass --real (and an address) to use the Bluetooth adapter.
"""

from __future__ import annotations

import asyncio
import contextlib

from _common import backend_for, exit_on_error, first_speaker, parse_args

from wking_device.ble import Speaker
from wking_device.protocol import EqPreset, LightMode


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0], address=True)
    async with backend_for(args) as backend:
        target = args.address or await first_speaker(backend)
        async with Speaker(target, backend=backend) as speaker:
            watcher = asyncio.create_task(_print_events(speaker))
            await speaker.set_volume(45)
            await speaker.set_eq(EqPreset.BASS_BOOST)
            await speaker.set_light(LightMode.RAINBOW)
            print(f"ping round trip: {await speaker.ping(b'hello') * 1000:.2f} ms")
            state = await speaker.get_state()
            print(f"volume {state.volume}, eq {state.eq.name}, light {state.light.name}")
            await asyncio.sleep(0.2)  # let notifications arrive
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


async def _print_events(speaker: Speaker) -> None:
    async with speaker.events() as events:
        async for event in events:
            print("event:", event)


if __name__ == "__main__":
    with exit_on_error():
        asyncio.run(main())
