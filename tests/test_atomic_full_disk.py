"""Files replaced whole on a really full disk (a 1 MiB tmpfs: tests/_full_disk.py).

``os.write`` on a filling disk writes part of what it is asked and returns without an error. The
package's writers used to write once and rename what they had over the good file: the device
bindings (then unreadable: exit 7), the agent's status file (then "not an agent status file").
Each now keeps the old file whole and fails with its own error.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from tests._full_disk import PAGE, fill, tiny_tmpfs

from wking_device._atomic import atomic_write
from wking_device._configfile import set_value
from wking_device.agent._status import StatusWriter, read_status
from wking_device.bindings import Binding, Bindings
from wking_device.config import resolve_paths
from wking_device.errors import StorageError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(name="tiny")
def fixture_tiny(tmp_path: Path) -> Iterator[Path]:
    yield from tiny_tmpfs(tmp_path / "tiny")


def _temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_cut_short_write_replaces_nothing(tiny: Path) -> None:
    path = tiny / "d" / "file"
    atomic_write(path, b"old")
    fill(tiny, leave=PAGE)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, b"x" * (3 * PAGE))
    assert path.read_bytes() == b"old"
    assert _temporaries(path.parent) == []


def test_the_mode_is_exact_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "file"
    old = os.umask(0o277)
    try:
        atomic_write(path, b"data", mode=0o640)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


def test_an_exclusive_write_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "file"
    atomic_write(path, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        atomic_write(path, b"second", exclusive=True)
    assert path.read_bytes() == b"first"
    assert _temporaries(tmp_path) == []


def test_bindings_cut_short_keep_the_old_file_whole(tiny: Path) -> None:
    key = os.urandom(32)
    bindings = Bindings(tiny / "cfg" / "devices.bin", key)
    for i in range(60):
        bindings.bind(Binding(address=f"C0:57:4B:00:{i // 256:02X}:{i % 256:02X}", name="x" * 80))
    before = bindings.load()
    assert (tiny / "cfg" / "devices.bin").stat().st_size > 2 * PAGE  # cut short, not refused
    filler = fill(tiny, leave=PAGE)
    with pytest.raises(StorageError, match="No space left"):
        bindings.bind(Binding(address="C0:57:4B:FF:FF:FF", name="one more"))
    assert Bindings(tiny / "cfg" / "devices.bin", key).load() == before
    assert _temporaries(tiny / "cfg") == []
    filler.unlink()
    bindings.bind(Binding(address="C0:57:4B:FF:FF:FF", name="one more"))
    assert len(Bindings(tiny / "cfg" / "devices.bin", key).load()) == len(before) + 1


def test_an_agent_status_cut_short_keeps_the_last_one(tiny: Path) -> None:
    path = tiny / "data" / "agent-status.json"
    path.parent.mkdir()
    writer = StatusWriter(path)
    first = {"state": "running", "cycle": 1, "last_errors": ["e" * 100] * 40}
    writer.write(first)
    fill(tiny, leave=PAGE)
    with pytest.raises(OSError, match="No space left"):
        writer.write({**first, "cycle": 2})
    assert read_status(path) == first  # not "not an agent status file"
    assert _temporaries(path.parent) == []


def test_a_config_file_cut_short_is_left_as_it_was(tiny: Path) -> None:
    paths = resolve_paths(tiny / "home")
    config = paths.config_file
    config.parent.mkdir(parents=True)
    config.write_text("# a long comment the owner wrote\n" * 400)
    before = config.read_bytes()
    assert len(before) > 2 * PAGE
    fill(tiny, leave=PAGE)
    with pytest.raises(StorageError, match="No space left"):
        set_value(paths, "upload.endpoint", "https://collector.example/v1/logs")
    assert config.read_bytes() == before
    assert _temporaries(config.parent) == []
