"""A permit does not travel: pickling refuses with a UsageError, copying returns the permit itself.

A permit's validity is a revocation flag its gate flips. Pickling one failed with "cannot pickle
'_thread.RLock'" from inside (the flag watches its gate), and a gate without a watch let a pickle
or a deep copy through with a flag of its own that no withdrawal ever flipped: a permit that
stayed valid after the consent was withdrawn.
"""

from __future__ import annotations

import copy
import pickle
from typing import TYPE_CHECKING

import pytest

from wking_device.consent import ConsentGate, Ledger
from wking_device.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

KEY = b"p" * 32


@pytest.mark.parametrize("watch", [None, 0.5])
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickling_a_permit_is_refused_with_a_usage_error(
    tmp_path: Path, watch: float | None, protocol: int
) -> None:
    gate = ConsentGate(Ledger(tmp_path / "ledger.jsonl", KEY), watch=watch)
    gate.grant(["operation_logs"])
    permit = gate.permit(["operation_logs"])
    with pytest.raises(UsageError, match="cannot be pickled") as caught:
        pickle.dumps(permit, protocol=protocol)
    assert "gate" in (caught.value.remedy or "")


@pytest.mark.parametrize("watch", [None, 0.5])
@pytest.mark.parametrize("copier", [copy.copy, copy.deepcopy])
def test_a_copy_is_the_permit_itself_and_withdrawal_revokes_it(
    tmp_path: Path, watch: float | None, copier: object
) -> None:
    gate = ConsentGate(Ledger(tmp_path / "ledger.jsonl", KEY), watch=watch)
    gate.grant(["operation_logs"])
    permit = gate.permit(["operation_logs"])
    copied = copier(permit)  # type: ignore[operator]
    assert copied is permit
    held = copier({"permit": permit})["permit"]  # type: ignore[operator]
    assert held is permit
    gate.withdraw(["operation_logs"])
    assert not copied.valid
    assert not held.valid
