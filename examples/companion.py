"""A companion script: find a speaker, show what it is, set it up, and follow its events.

Standalone (copy it anywhere): it runs against one simulated speaker from
``wking_device.sim``; pass ``--real`` to use the Bluetooth adapter and the first W-KING
speaker in range. It stops after ``--events N`` events (default 3), or at Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import TYPE_CHECKING

from wking_device import Speaker, WkingError, discover
from wking_device.events import (
    BatteryChanged,
    ButtonPressed,
    Connected,
    Disconnected,
    SpeakerEvent,
    StateChanged,
)
from wking_device.protocol import Button, EqPreset

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from wking_device import BleBackend


@contextlib.asynccontextmanager
async def backend(real: bool) -> AsyncIterator[tuple[BleBackend | None, object | None]]:
    """The platform's bleak backend (``None``), or a running simulated speaker's."""
    if real:
        yield None, None
        return
    from wking_device.sim import SimWorld

    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        yield world.backend, world.speakers[0]


def shown(text: object) -> str:
    """Return ``text`` safe for a terminal: every character that is not printable, escaped.

    A speaker chooses its own name and information strings, which could carry escape sequences.
    """
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(text))


def describe(event: SpeakerEvent) -> str:
    """One line per event."""
    if isinstance(event, BatteryChanged):
        return f"battery {event.level} %"
    if isinstance(event, StateChanged):
        return f"volume {event.volume}, eq {event.eq.name}, light {event.light.name}"
    if isinstance(event, ButtonPressed):
        return f"button {event.button.name} {event.action.name}"
    if isinstance(event, Connected):
        return "reconnected" if event.reconnect else "connected"
    if isinstance(event, Disconnected):
        return "disconnected" if event.expected else "link lost"
    return type(event).__name__


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--real", action="store_true", help="use the Bluetooth adapter")
    parser.add_argument("--events", type=int, default=3, help="stop after this many events")
    args = parser.parse_args()

    async with backend(args.real) as (ble_backend, sim):
        found = await discover(timeout=3.0, backend=ble_backend)
        if not found:
            raise SystemExit("no W-KING speaker found")
        target = found[0]
        print(f"found {shown(target.name)} ({shown(target.model)})")

        lost = asyncio.Event()
        async with (
            Speaker(
                target, backend=ble_backend, disconnected_callback=lambda _s: lost.set()
            ) as speaker,
            speaker.events() as events,
        ):
            info = await speaker.read_info()
            maker, model = shown(info.manufacturer), shown(info.model)
            print(f"{maker} {model}, firmware {shown(info.firmware)}")
            print(f"battery {info.battery} %")
            await speaker.set_volume(30)
            await speaker.set_eq(EqPreset.BASS_BOOST)
            if sim is not None:  # the simulated speaker plays the user's part
                from wking_device.sim import SimSpeaker

                assert isinstance(sim, SimSpeaker)
                await sim.set_battery(57)
                await sim.press_button(Button.PLAY_PAUSE)
            seen = 0
            async for event in events:
                print("event:", describe(event))
                seen += 1
                if seen >= args.events:
                    break


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except WkingError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(error.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
