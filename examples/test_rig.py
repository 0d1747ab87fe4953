"""A test rig: a fleet of simulated speakers with faults, read concurrently, events counted.

The first five speakers of the fleet (twenty by default, --speakers N) misbehave: not
connectable, aborting a connection, slow, malformed answers, dropping the link; the fleet read
reports which ones failed and why, and the operation events show every attempt. Pass --real to
read real speakers instead (faults then come from the world).
"""

from __future__ import annotations

import asyncio
from collections import Counter

from _common import exit_on_error, parse_args

from wking_device.ble import BleBackend, EventBus, discover, read_all
from wking_device.config import BleSettings
from wking_device.models import OperationEvent


async def read_fleet(backend: BleBackend | None, bus: EventBus) -> None:
    settings = BleSettings(connect_timeout=1.0, command_timeout=1.0, connect_attempts=3)
    found = await discover(2.0, backend=backend, events=bus)
    result = await read_all(found, backend=backend, events=bus, settings=settings, limit=5)
    print(f"read {len(result.infos)} of {len(found)} speakers in {result.duration_s:.2f} s")
    for address, error in sorted(result.errors.items()):
        print(f"  {address}: {type(error).__name__} ({error.reason})")


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0], speakers=20)
    bus = EventBus()
    outcomes: Counter[tuple[str, str]] = Counter()

    def count(event: OperationEvent) -> None:
        outcomes[(str(event.kind), str(event.outcome))] += 1

    bus.subscribe(count)
    if args.real:
        await read_fleet(None, bus)
    else:
        # imported here: --real must work without the sim extra (bumble), as on a Raspberry Pi
        from wking_device.sim import FaultPlan, SimWorld

        faults = {
            0: FaultPlan(connectable=False),
            1: FaultPlan(abort_connect_attempts=frozenset({1})),  # first attempt aborts, retried
            2: FaultPlan(response_delay_s=3.0),  # slower than the command timeout
            3: FaultPlan(malformed_responses=1.0),
            4: FaultPlan(disconnect_after_ops=2),
        }
        async with SimWorld.fleet(args.speakers, instant_connect=True) as world:
            for index, plan in faults.items():
                if index < len(world.speakers):  # a fleet smaller than five has fewer faults
                    world.speakers[index].faults = plan
            await read_fleet(world.backend, bus)
    print("operation events:")
    for (kind, outcome), n in sorted(outcomes.items()):
        print(f"  {kind:10} {outcome:9} {n}")


if __name__ == "__main__":
    with exit_on_error():
        asyncio.run(main())
