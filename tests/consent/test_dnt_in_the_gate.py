"""Do Not Track in the environment binds every gate, however it was built (consent review).

``DO_NOT_TRACK=1`` denies every category regardless of grants (DESIGN §3), and no source
switches off what another switched on. A gate built in code (``ConsentGate(ledger)``,
``open_gate(paths, Settings())``) never read the environment, and ``set_do_not_track(False)``
switched off Do Not Track that the environment had switched on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wking_device.config import Settings, resolve_paths
from wking_device.consent import ConsentGate, Ledger, open_gate
from wking_device.errors import UsageError

KEY = b"d" * 32


@pytest.fixture(name="granted")
def fixture_granted(tmp_path: Path) -> Ledger:
    ledger = Ledger(tmp_path / "consent" / "ledger.jsonl", KEY)
    ConsentGate(ledger).grant(["device_info"])
    return Ledger(ledger.path, KEY)


# Spellings of "on" (names in any letter case, values with whitespace), and values that are
# neither on nor off (fail closed: on).
_ON = [
    ("DO_NOT_TRACK", "1"),
    ("do_not_track", " On \n"),
    ("WKING_DO_NOT_TRACK", "TRUE"),
    ("Do_Not_Track", "yes"),
    ("DO_NOT_TRACK", "\uff11"),  # a full-width digit one
    ("DO_NOT_TRACK", "2"),
    ("DO_NOT_TRACK", "0\u200b"),  # zero followed by a zero-width space: not "0"
]


@pytest.mark.parametrize(("name", "value"), _ON)
def test_a_gate_built_in_code_honours_do_not_track_in_the_environment(
    granted: Ledger, monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    gate = ConsentGate(granted)
    assert gate.do_not_track
    assert gate.try_permit(["device_info"]) is None
    assert gate.state("device_info").reason == "do_not_track"


def test_one_variable_off_does_not_switch_off_another_on(
    granted: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DO_NOT_TRACK", "0")
    monkeypatch.setenv("WKING_DO_NOT_TRACK", "1")
    assert ConsentGate(granted).try_permit(["device_info"]) is None


@pytest.mark.parametrize("value", ["", "   ", "0", "off", "No"])
def test_empty_and_off_values_leave_do_not_track_off(
    granted: Ledger, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("DO_NOT_TRACK", value)
    assert ConsentGate(granted).try_permit(["device_info"]) is not None


def test_open_gate_with_settings_made_in_code_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = resolve_paths()
    gate = open_gate(paths, Settings(), key=KEY)
    gate.grant(["device_info"])
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    assert open_gate(paths, Settings(), key=KEY).try_permit(["device_info"]) is None


def test_the_api_cannot_switch_off_do_not_track_the_environment_switched_on(
    granted: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DO_NOT_TRACK", "1")
    gate = ConsentGate(granted, do_not_track=True)
    with pytest.raises(UsageError, match="DO_NOT_TRACK") as info:
        gate.set_do_not_track(False)
    assert "\n" not in str(info.value)
    assert gate.do_not_track
    assert gate.try_permit(["device_info"]) is None
    assert gate.history()[-1].event == "dnt_on"
