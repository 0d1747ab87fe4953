"""What the agent reports of its errors holds no address, no speaker name, no escape (review).

The summary's ``errors`` (printed by ``wking agent run`` on standard output, the journal under
systemd, and in its ``--json``) were the exceptions' messages as they were, while the status file
had them scrubbed. A message can name a speaker: here a scanner fails (from the second scan on)
with the BlueZ device path and the name of a hostile simulated speaker, whose advertised name is
an address with an escape sequence, a line break, Rich markup and a bidirectional override.

The status file's scrub replaced a speaker's name wherever its text appeared, so a speaker named
``e`` turned every ``e`` of a message into ``[NAME]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from wking_device.agent import STATUS_FILE, Agent
from wking_device.collect import open_installation_gate
from wking_device.config import load_settings, resolve_paths
from wking_device.sim import SimWorld, SpeakerSpec
from wking_device.store import open_store

if TYPE_CHECKING:
    import pytest

    from wking_device.sim._scanner import SimScanner

HOSTILE = "C0:57:4B:00:00:09\x1b[2J\n[b]x\u202e"
"""A name that is an address, clears a terminal, breaks a line, is Rich markup, reverses text."""

_BOUND_S = 30.0  # a bound for a test that goes wrong, never waited out


def _failing_scanner(world: SimWorld) -> type[SimScanner]:
    """The world's scanner, except that every start after the first fails naming the speaker."""
    base: Any = world.backend.scanner

    class Failing(base):  # type: ignore[misc,valid-type]
        starts: ClassVar[int] = 0

        async def start(self) -> None:
            Failing.starts += 1
            if Failing.starts > 1:
                speaker = world.speakers[0]
                path = "/org/bluez/hci0/dev_" + speaker.address.replace(":", "_")
                # as a stack's bug may say it: the device's object path and its name
                raise RuntimeError(f"device {speaker.name} vanished: KeyError {path!r}")
            await super().start()

    return Failing


def _spellings(address: str) -> list[str]:
    octets = address.split(":")
    return [
        sep.join(case(o) for o in octets)
        for case in (str.upper, str.lower)
        for sep in (":", "-", "_", "")
    ]


async def test_the_summary_and_the_status_name_no_address_and_no_speaker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    paths, settings = resolve_paths(), load_settings()
    paths.ensure()
    gate = open_installation_gate(paths, settings)
    gate.grant(["operation_logs", "device_info"])
    spec = dataclasses.replace(SpeakerSpec.for_index(1), name=HOSTILE)
    async with (
        SimWorld([spec], instant_connect=True) as world,
        open_store(paths, settings) as store,
    ):
        backend = type(world.backend)(scanner=_failing_scanner(world), client=world.backend.client)
        agent = Agent(
            gate=gate,
            store=store,
            settings=settings,
            backend=backend,
            connect_all=True,
            interval=0.2,
            scan_seconds=0.2,
            adapter_mac="",
            max_backoff=0.2,
            status_file=paths.data_dir / STATUS_FILE,
        )
        caplog.set_level(logging.WARNING, logger="wking_device.agent")
        run = asyncio.create_task(agent.run(_BOUND_S))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _BOUND_S
        while agent.summary.failures.get("cycle", 0) < 1:
            assert not run.done(), run.result()
            assert loop.time() < deadline, "the failing scan was never reported"
            await asyncio.sleep(0.02)
        agent.stop()
        summary = await run
        address = world.speakers[0].address
    assert summary.speakers_read == 1  # the first cycle read the hostile speaker
    assert summary.errors, summary
    reported = orjson.dumps(summary.as_dict()).decode()
    status = (paths.data_dir / STATUS_FILE).read_text()
    logged = [r.getMessage() for r in caplog.records if "cycle failed" in r.getMessage()]
    assert logged
    for text in (reported, status, *summary.errors, *logged):
        for spelling in [*_spellings(address), *_spellings("C0:57:4B:00:00:09")]:
            assert spelling not in text, text
        assert "\x1b" not in text
        assert "\\u001b" not in text  # not even escaped: the name is taken out whole
        assert "[b]" not in text
    assert all("\n" not in line and "\u202e" not in line for line in summary.errors)
    assert any("[NAME]" in line and "[MAC]" in line for line in summary.errors), summary.errors


def test_a_short_name_does_not_mangle_messages() -> None:
    paths, settings = resolve_paths(), load_settings()
    paths.ensure()
    gate = open_installation_gate(paths, settings)
    agent = Agent(gate=gate, store=open_store(paths, settings), settings=settings, adapter_mac="")
    agent._names.update({"e", "a", "I", "Kit", "W-KING Kitchen"})
    message = "a device error: I/O failed in the Kitchen kit"
    assert agent._scrub(message) == message
    assert agent._scrub("Kit failed; W-KING Kitchen too") == "[NAME] failed; [NAME] too"
    asyncio.run(agent._store.aclose())
