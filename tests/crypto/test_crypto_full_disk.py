"""The key store on a really full disk (a 1 MiB tmpfs: tests/_full_disk.py).

A key store write must leave the old file whole when the disk fills up during it, and a key whose
write failed must never be handed out: records sealed with it would not open after a restart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from tests._full_disk import PAGE, fill, tiny_tmpfs

from wking_device.config import resolve_paths
from wking_device.crypto import key_dir, open_key_store
from wking_device.errors import KeyStoreError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from wking_device.config import Paths


@pytest.fixture(name="tiny")
def fixture_tiny(tmp_path: Path) -> Iterator[Path]:
    yield from tiny_tmpfs(tmp_path / "tiny")


@pytest.fixture(name="tiny_paths")
def fixture_tiny_paths(tiny: Path) -> Paths:
    paths = resolve_paths(tiny / "home")
    paths.ensure()
    return paths


def test_a_write_cut_short_leaves_the_key_store_file_whole(tiny: Path, tiny_paths: Paths) -> None:
    keys = open_key_store(tiny_paths)
    kept = {f"s{i}": keys.secret(f"s{i}") for i in range(120)}
    path = key_dir(tiny_paths) / "keystore.json"
    before = path.read_bytes()
    assert len(before) > 2 * PAGE  # more than the room left: the write is cut short, not refused
    filler = fill(tiny, leave=PAGE)
    with pytest.raises(KeyStoreError, match="No space left"):
        keys.secret("one more")
    assert path.read_bytes() == before
    assert not list(key_dir(tiny_paths).glob(".*.tmp"))  # no partial copy of the keys is left
    filler.unlink()
    reopened = open_key_store(tiny_paths, create=False)
    assert {name: reopened.secret(name) for name in kept} == kept


def test_a_data_key_that_was_not_written_is_never_handed_out(tiny: Path, tiny_paths: Paths) -> None:
    keys = open_key_store(tiny_paths)
    filler = fill(tiny)
    with pytest.raises(KeyStoreError, match="No space left"):
        keys.current_data_key("device_info", rotate_after=1e9)
    filler.unlink()
    dek = keys.current_data_key("device_info", rotate_after=1e9)
    # the key that seals records is the one a restarted process finds
    assert open_key_store(tiny_paths, create=False).data_key(dek.key_id) == dek
