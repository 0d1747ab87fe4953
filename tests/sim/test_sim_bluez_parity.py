"""Conformance: where bleak's BlueZ backend behaves in a way of its own, the simulator does too.

Each test states the BlueZ behaviour (from BlueZ and bleak's ``bluezdbus`` backend) and checks
it against the simulator through bleak's public API. Where bleak's real BlueZ classes can be
exercised without D-Bus (their constructors), the test checks them too, so a bleak upgrade that
changes the behaviour shows up here. docs/testing.md lists what still differs.
"""

from __future__ import annotations

import pytest
from bleak import BleakScanner
from bleak.args.bluez import BlueZScannerArgs, OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.exc import BleakError

from wking_device.ble import discover
from wking_device.ble._discovery import PASSIVE_OR_PATTERNS, bluez_scanner_args
from wking_device.protocol import WKING_SERVICE_UUID
from wking_device.sim import SimWorld

FLAGS_06 = OrPattern(0, AdvertisementDataType.FLAGS, b"\x06")


# --- passive scanning needs or_patterns (issue 10, defect 4) --------------------------------------


def test_bluez_refuses_a_passive_scan_without_or_patterns_and_takes_ours() -> None:
    bluez = pytest.importorskip("bleak.backends.bluezdbus.scanner")  # dbus-fast: Linux only
    with pytest.raises(BleakError, match="or_patterns"):
        bluez.BleakScannerBlueZDBus(None, None, "passive", bluez=BlueZScannerArgs())
    # The arguments wking passes construct (the constructor does not touch D-Bus).
    bluez.BleakScannerBlueZDBus(None, None, "passive", bluez=bluez_scanner_args("passive", None))


async def test_the_simulator_refuses_a_passive_scan_without_or_patterns() -> None:
    async with SimWorld.fleet(1, adv_interval_ms=20) as world:
        with pytest.raises(BleakError, match="passive scanning mode requires bluez or_patterns"):
            BleakScanner(scanning_mode="passive", backend=world.backend.scanner)
        with pytest.raises(BleakError, match="or_patterns"):
            await BleakScanner.discover(
                0.05, scanning_mode="passive", bluez={}, backend=world.backend.scanner
            )


async def test_a_passive_scan_reports_only_what_a_pattern_matches() -> None:
    # BlueZ's advertisement monitor: an advertisement is reported when one of the or_patterns
    # (start, AD type, content) is found in it.
    async with SimWorld.fleet(2, adv_interval_ms=20) as world:
        none_match = BlueZScannerArgs(
            or_patterns=[OrPattern(0, AdvertisementDataType.FLAGS, b"\x1a")]
        )
        assert (
            await BleakScanner.discover(
                0.15, scanning_mode="passive", bluez=none_match, backend=world.backend.scanner
            )
            == []
        )
        by_company = BlueZScannerArgs(
            or_patterns=[
                OrPattern(0, AdvertisementDataType.MANUFACTURER_SPECIFIC_DATA, b"\xff\xffWK")
            ]
        )
        found = await BleakScanner.discover(
            0.15, scanning_mode="passive", bluez=by_company, backend=world.backend.scanner
        )
        assert {d.address for d in found} == {s.address for s in world.speakers}


async def test_discover_passive_works_on_the_simulator_as_on_bluez() -> None:
    assert FLAGS_06 in PASSIVE_OR_PATTERNS
    async with SimWorld.fleet(3, adv_interval_ms=20) as world:
        speakers = await discover(0.2, backend=world.backend, scanning_mode="passive")
        assert {s.address for s in speakers} == {s.address for s in world.speakers}
        assert all(s.name is None for s in speakers)  # names come in scan responses only
        assert all(s.model != "unknown" for s in speakers)  # from the manufacturer data
    assert WKING_SERVICE_UUID
