"""Issue 12 findings 6 and 9: errors speak library to library users, and say what really happened.

A library user gets a remedy in terms of the API (``str(error)``); the ``wking`` command prints
the CLI's wording (``cli_message()``). Each case here was wrong before: a CLI remedy to a library
user, "open in another process" for this very process, a scan for ``Speaker("kitchen")``, an
adapter hint for a closed simulator, a bare ``StorageError`` for a store that does not exist.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from wking_device import (
    AdapterUnavailable,
    ConsentRequired,
    InvalidAddress,
    Speaker,
    StoreInUse,
    StoreNotFound,
    load_settings,
    open_installation_gate,
    open_store,
    resolve_paths,
)

if TYPE_CHECKING:
    from pathlib import Path


def test_consent_required_gives_a_library_remedy_and_a_cli_one() -> None:
    error = ConsentRequired({"location", "diagnostics"})
    assert "wking" not in str(error)
    assert "ConsentGate.grant(['diagnostics', 'location'])" in str(error)
    assert "wking consent grant diagnostics location" in error.cli_message()


def test_the_cli_prints_its_own_wording() -> None:
    pytest.importorskip("bumble")
    from click.testing import CliRunner  # noqa: PLC0415

    from wking_device.cli._app import cli  # noqa: PLC0415

    result = CliRunner().invoke(cli, ["--simulate", "1", "info", "C0:57:4B:00:00:09"])
    assert result.exit_code == 4, result.output
    assert "run 'wking scan'" in result.stderr
    assert "discover()" not in result.stderr


async def test_a_second_open_store_in_this_process_says_so(home: Path) -> None:
    del home
    paths = resolve_paths()
    settings = load_settings(paths)
    open_installation_gate(paths, settings)
    async with open_store(paths, settings):
        with pytest.raises(StoreInUse) as caught:
            open_store(paths, settings)
    assert caught.value.in_this_process
    assert "in this process" in str(caught.value)
    assert "another process" not in str(caught.value)
    # closed: it opens again
    async with open_store(paths, settings):
        pass


def test_a_read_only_open_of_no_store_is_store_not_found_and_creates_nothing(home: Path) -> None:
    paths = resolve_paths()
    with pytest.raises(StoreNotFound) as caught:
        open_store(paths, load_settings(paths), readonly=True)
    assert caught.value.path is not None
    assert not home.exists() or not any(home.rglob("*"))


def test_a_read_only_gate_creates_no_key(home: Path) -> None:
    paths = resolve_paths()
    gate = open_installation_gate(paths, load_settings(paths), readonly=True)
    assert not gate.states()["operation_logs"].granted
    assert not home.exists() or not any(home.rglob("*"))


@pytest.mark.parametrize("text", ["kitchen", "AA:BB:CC:DD:EE", "AA:BB:CC:DD:EE:GG", "AA:BB"])
def test_speaker_refuses_a_malformed_address_at_once(text: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidAddress) as caught:
        Speaker(text)
    assert time.monotonic() - started < 1.0
    assert caught.value.address == text
    assert "wking" not in str(caught.value)


@pytest.mark.parametrize(
    "text", ["AA:BB:CC:DD:EE:FF", "aa-bb-cc-dd-ee-ff", "0A1B2C3D-4E5F-6A7B-8C9D-0E1F2A3B4C5D"]
)
def test_speaker_accepts_addresses_of_every_platform(text: str) -> None:
    assert Speaker(text).address == text


async def test_a_closed_sim_world_says_it_is_closed() -> None:
    pytest.importorskip("bumble")
    from wking_device import discover  # noqa: PLC0415
    from wking_device.sim import SimWorld  # noqa: PLC0415

    async with SimWorld.fleet(1) as world:
        pass
    with pytest.raises(AdapterUnavailable) as caught:
        await asyncio.wait_for(discover(backend=world.backend, timeout=1.0), 10)
    assert "SimWorld is closed" in str(caught.value)
    assert "bluetoothctl" not in str(caught.value)
