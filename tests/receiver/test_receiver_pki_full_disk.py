"""The receiver's CA and certificate written on a really full disk (tests/_full_disk.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from tests._full_disk import PAGE, fill, tiny_tmpfs

from wking_device.receiver._pki import ensure_pki

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Path]:
    yield from tiny_tmpfs(tmp_path / "tiny")


def test_a_full_disk_leaves_no_half_written_file_and_the_next_start_completes(
    tiny: Path,
) -> None:
    data = tiny / "rx"
    data.mkdir()
    filler = fill(tiny, leave=PAGE)  # room for the CA's key, not for its certificate
    with pytest.raises(OSError):
        ensure_pki(data)
    assert sorted(p.name for p in data.iterdir() if "tmp" in p.name) == []
    filler.unlink()
    pki = ensure_pki(data)
    assert pki.ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert sorted(p.name for p in data.iterdir()) == [
        "ca.key",
        "ca.pem",
        "server.key",
        "server.pem",
    ]
