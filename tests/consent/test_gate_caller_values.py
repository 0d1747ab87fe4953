"""A ConsentGate refuses wrong values and calls after close() with a typed UsageError.

``set_do_not_track("no")`` used to switch Do Not Track *on* (a non-empty string is true) and
write the string into the ledger; a closed gate still recorded Do Not Track and minor changes
(its documented contract: "it records nothing more"); ``grant("operation_logs")`` complained
about an unknown category ``'_'``; ``subscribe(None)`` was accepted and failed at the next
revocation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wking_device.consent import ConsentGate, Ledger
from wking_device.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

KEY = b"g" * 32


@pytest.fixture(name="ledger_file")
def fixture_ledger_file(tmp_path: Path) -> Path:
    return tmp_path / "consent" / "ledger.jsonl"


@pytest.fixture(name="make_gate")
def fixture_make_gate(ledger_file: Path) -> Callable[[], ConsentGate]:
    return lambda: ConsentGate(Ledger(ledger_file, KEY))


@pytest.mark.parametrize("method", ["grant", "withdraw", "permit", "try_permit"])
def test_one_category_instead_of_a_list_names_the_argument(
    make_gate: Callable[[], ConsentGate], method: str
) -> None:
    gate = make_gate()
    with pytest.raises(UsageError, match="categories") as caught:
        getattr(gate, method)("operation_logs")
    assert "'_'" not in str(caught.value)
    assert "['operation_logs']" in (caught.value.remedy or "")


@pytest.mark.parametrize("setter", ["set_do_not_track", "set_minor"])
@pytest.mark.parametrize("value", ["no", "", 0, 1, None])
def test_a_switch_takes_a_bool_only(
    make_gate: Callable[[], ConsentGate], ledger_file: Path, setter: str, value: object
) -> None:
    gate = make_gate()
    before = ledger_file.read_bytes() if ledger_file.exists() else b""
    with pytest.raises(UsageError, match="on"):
        getattr(gate, setter)(value)
    assert (ledger_file.read_bytes() if ledger_file.exists() else b"") == before
    assert gate.do_not_track is False
    assert gate.minor is False


@pytest.mark.parametrize(
    "change",
    [
        lambda gate: gate.set_do_not_track(True),
        lambda gate: gate.set_minor(True),
        lambda gate: gate.apply_policies(gate.policies),
    ],
    ids=["set_do_not_track", "set_minor", "apply_policies"],
)
def test_a_closed_gate_records_nothing(
    make_gate: Callable[[], ConsentGate],
    ledger_file: Path,
    change: Callable[[ConsentGate], None],
) -> None:
    gate = make_gate()
    gate.grant(["operation_logs"])
    gate.close()
    before = ledger_file.read_bytes()
    with pytest.raises(UsageError, match="closed"):
        change(gate)
    assert ledger_file.read_bytes() == before
    again = make_gate()
    assert (again.do_not_track, again.minor) == (False, False)
    assert again.permit(["operation_logs"]).covers("operation_logs")


def test_subscribe_takes_a_callable_only(make_gate: Callable[[], ConsentGate]) -> None:
    gate = make_gate()
    with pytest.raises(UsageError, match="listener"):
        gate.subscribe(None)  # type: ignore[arg-type]
    gate.grant(["operation_logs"])
    assert gate.withdraw(["operation_logs"]) is not None
