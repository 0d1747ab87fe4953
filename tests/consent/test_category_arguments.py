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


def test_apply_policies_refuses_what_is_not_a_policy_set_and_changes_nothing(
    gate: ConsentGate,
) -> None:
    gate.grant(["device_info"])
    before = gate.policies
    with pytest.raises(UsageError) as info:
        gate.apply_policies("1.2")  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
    assert gate.policies is before
    assert gate.permit(["device_info"]).valid
    gate.withdraw(["device_info"])  # the gate still works
    assert gate.try_permit(["device_info"]) is None


@pytest.mark.parametrize(
    "kwargs",
    [{"policies": "1.2"}, {"watch": "0.1"}],
    ids=["policies", "watch"],
)
def test_the_gate_refuses_arguments_of_the_wrong_type(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(UsageError):
        ConsentGate(Ledger(tmp_path / "ledger.jsonl", KEY), **kwargs)


@pytest.mark.parametrize("ledger", [None, "ledger.jsonl"])
def test_the_gate_needs_a_ledger(ledger: object) -> None:
    with pytest.raises(UsageError):
        ConsentGate(ledger)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["k" * 32, None, 12345])
def test_the_ledger_key_must_be_bytes(tmp_path: Path, key: object) -> None:
    with pytest.raises(UsageError):
        Ledger(tmp_path / "ledger.jsonl", key)  # type: ignore[arg-type]
