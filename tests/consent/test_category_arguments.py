"""Category arguments that do not say which categories the user chose are refused (consent review).

``grant({"location": False, "device_info": True})`` granted both categories: a mapping's keys
were taken as the categories, whatever the values said. Mixed-type lists raised a bare
``TypeError`` from sorting instead of a typed error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wking_device.consent import ConsentGate, Ledger
from wking_device.errors import UsageError

KEY = b"c" * 32


@pytest.fixture(name="gate")
def fixture_gate(tmp_path: Path) -> ConsentGate:
    return ConsentGate(Ledger(tmp_path / "consent" / "ledger.jsonl", KEY))


_NOT_A_CHOICE = [
    {"location": False, "device_info": True},
    {"device_info": 1},
    ["device_info", 1],
    ["device_info", None],
]


@pytest.mark.parametrize("categories", _NOT_A_CHOICE, ids=repr)
@pytest.mark.parametrize("verb", ["grant", "withdraw", "permit", "try_permit"])
def test_a_category_argument_that_is_not_a_list_of_names_is_refused(
    gate: ConsentGate, verb: str, categories: object
) -> None:
    if verb != "grant":
        gate.grant(["device_info"])
    before = len(gate.history())
    with pytest.raises(UsageError) as info:
        getattr(gate, verb)(categories)
    assert "\n" not in str(info.value)
    assert len(gate.history()) == before
    assert not gate.state("location").granted
