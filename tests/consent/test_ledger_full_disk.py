"""The consent ledger on a really full disk (a 1 MiB tmpfs: tests/_full_disk.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from tests._full_disk import fill, tiny_tmpfs

from wking_device.consent import ConsentGate, Ledger
from wking_device.errors import StorageError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

KEY = b"s" * 32


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Path]:
    yield from tiny_tmpfs(tmp_path / "tiny")


def test_a_grant_whose_head_cannot_be_written_is_not_in_force_afterwards(tiny: Path) -> None:
    # The entry fits in the ledger's last page (no new block needed) and is synced; the head,
    # a new file, finds no room. The caller is told the grant failed: a later load must not
    # adopt it as an interrupted append (a grant the user was told had failed would let the
    # agent collect).
    path = tiny / "consent" / "ledger.jsonl"
    ConsentGate(Ledger(path, KEY)).grant(["device_info"])
    size = path.stat().st_size
    filler = fill(tiny)
    with pytest.raises(StorageError):
        ConsentGate(Ledger(path, KEY)).grant(["location"])
    filler.unlink()
    gate = ConsentGate(Ledger(path, KEY))
    assert gate.tampered is None
    assert [entry.event for entry in gate.history()] == ["grant"]
    assert not gate.state("location").granted
    assert path.stat().st_size == size
    gate.grant(["location"])  # and the next append works
    assert ConsentGate(Ledger(path, KEY)).state("location").granted
