"""The world: deterministic fleets, speakers added and removed at run time, patching, extras."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap

import pytest
from bleak import BleakClient, BleakScanner

import wking_device.sim
from wking_device.errors import AdapterUnavailable, UsageError
from wking_device.protocol import (
    BATTERY_LEVEL_UUID,
    MANUFACTURER_NAME_UUID,
    WKING_COMMAND_CHAR_UUID,
    FrameCodec,
    PowerOff,
    PowerState,
    Role,
)
from wking_device.sim import INSTALL_HINT, SimWorld, SpeakerSpec, speaker_address
from wking_device.sim import _compat as compat

_DISCOVER_SCRIPT = textwrap.dedent(
    """
    import asyncio, json
    from bleak import BleakScanner
    from wking_device.sim import SimWorld

    async def main():
        async with SimWorld.fleet(3) as world:
            found = await BleakScanner.discover(0.3, backend=world.backend.scanner)
            print(json.dumps(sorted([d.address, d.name] for d in found)))

    asyncio.run(main())
    """
)


async def test_fleet_is_deterministic_across_processes() -> None:
    async with SimWorld.fleet(3) as world:
        found = await BleakScanner.discover(0.3, backend=world.backend.scanner)
        here = sorted([d.address, d.name] for d in found)
    out = subprocess.run(  # noqa: ASYNC221 - a short child process is the point of the test
        [sys.executable, "-c", _DISCOVER_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    there = json.loads(out.stdout)
    assert here == there
    assert [a for a, _ in here] == [speaker_address(i) for i in (1, 2, 3)]
    assert here[0][1] == "W-KING D8 Mini 0001"
    models = {s.model_id for s in SimWorld.fleet(3)._specs}
    assert len(models) == 3  # models cycle through the protocol's table


def test_spec_validation() -> None:
    with pytest.raises(UsageError, match="random static"):
        SpeakerSpec.for_index(1, address="00:11:22:33:44:55")
    with pytest.raises(UsageError, match="same address"):
        SimWorld([SpeakerSpec.for_index(1), SpeakerSpec.for_index(1)])
    with pytest.raises(UsageError):
        speaker_address(0)


async def test_add_and_remove_speakers_at_run_time() -> None:
    async with SimWorld.fleet(1) as world:
        added = await world.add_speaker()
        assert added.address == speaker_address(2)
        assert await BleakScanner.find_device_by_address(
            added.address, 1.0, backend=world.backend.scanner
        )
        lost = asyncio.Event()
        async with BleakClient(
            added.address, lambda _c: lost.set(), timeout=2, backend=world.backend.client
        ) as client:
            await world.remove_speaker(added.address)
            await asyncio.wait_for(lost.wait(), 1.0)
            assert not client.is_connected
        assert world.speaker_or_none(added.address) is None
        assert [s.address for s in world.speakers] == [speaker_address(1)]


async def test_state_is_readable_and_power_off_drops_the_link() -> None:
    async with SimWorld.fleet(2) as world:
        speaker = world.speakers[1]
        assert speaker.state.volume == speaker.spec.volume
        lost = asyncio.Event()
        async with BleakClient(
            speaker.address, lambda _c: lost.set(), timeout=2, backend=world.backend.client
        ) as client:
            codec = FrameCodec(Role.CENTRAL)
            for fragment in codec.send(PowerOff(seq=codec.next_seq())):
                await client.write_gatt_char(WKING_COMMAND_CHAR_UUID, fragment, response=True)
            await asyncio.wait_for(lost.wait(), 1.0)
        assert speaker.state.power is PowerState.STANDBY
        found = await BleakScanner.discover(0.3, backend=world.backend.scanner)
        assert [d.address for d in found] == [world.speakers[0].address]


async def test_patch_bleak_for_code_that_passes_no_backend() -> None:
    import bleak  # noqa: PLC0415

    original = bleak.get_platform_client_backend_type
    async with SimWorld.fleet(2) as world:
        with world.patch_bleak():
            found = await BleakScanner.discover(0.3)
            assert {d.address for d in found} == {s.address for s in world.speakers}
            async with BleakClient(found[0]) as client:
                assert client.backend_id == "SimBleakClient"
                assert await client.read_gatt_char(MANUFACTURER_NAME_UUID) == b"W-KING"
                adapter = await bleak.BleakAdapter.get()
                assert [d.address for d in await adapter.get_connected_devices()] == [
                    found[0].address
                ]
    assert bleak.get_platform_client_backend_type is original


async def test_fleet_of_twenty_discovered_and_read_concurrently() -> None:
    async with SimWorld.fleet(20, instant_connect=True) as world:
        seen: dict[str, object] = {}
        done = asyncio.Event()

        def on_adv(device: object, _adv: object) -> None:
            seen[device.address] = device  # type: ignore[attr-defined]
            if len(seen) == 20:
                done.set()

        async with BleakScanner(on_adv, backend=world.backend.scanner):
            await asyncio.wait_for(done.wait(), 2.0)

        async def read(device: object) -> bytes:
            async with BleakClient(device, timeout=5, backend=world.backend.client) as client:
                return bytes(await client.read_gatt_char(MANUFACTURER_NAME_UUID))

        values = await asyncio.gather(*(read(d) for d in seen.values()))
        assert values == [b"W-KING"] * 20


def test_missing_bumble_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "bumble_available", lambda: False)
    with pytest.raises(AdapterUnavailable) as info:
        compat.require_bumble()
    assert INSTALL_HINT in str(info.value)
    assert 'pip install -e ".[sim]"' in str(info.value)


def test_plugin_and_package_import_without_bumble() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["bumble"] = None  # as if the sim extra were not installed
        import wking_device.sim.pytest_plugin
        import wking_device.sim as sim
        from wking_device.errors import AdapterUnavailable
        plan = sim.FaultPlan(drop_responses=0.5)
        assert not sim.bumble_available()
        try:
            sim.SimWorld
        except AdapterUnavailable as exc:
            print(type(exc).__name__, exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("AdapterUnavailable")
    assert 'pip install "bumble==0.0.236"' in out.stdout


def test_public_names() -> None:
    assert wking_device.sim.__all__ == sorted(wking_device.sim.__all__)
    for name in wking_device.sim.__all__:
        assert getattr(wking_device.sim, name) is not None


async def test_close_leaves_no_task_and_nothing_logs_afterwards(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Issue 10, defect 5: a GATT handler sleeping out its response delay and bumble's
    # advertising restart kept running after close and later logged "connection not found".
    caplog.set_level(logging.DEBUG)
    before = asyncio.all_tasks()
    world = SimWorld.fleet(2, adv_interval_ms=20)
    await world.start()
    speaker = world.speakers[0]
    async with BleakClient(speaker.address, timeout=5, backend=world.backend.client) as client:
        speaker.faults.response_delay_s = 0.4
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.read_gatt_char(BATTERY_LEVEL_UUID), 0.05)
    await world.close()
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert left == []
    caplog.clear()
    # An observation window longer than the response delay: whatever was left would log now.
    await asyncio.sleep(0.6)
    assert [r.getMessage() for r in caplog.records] == []
