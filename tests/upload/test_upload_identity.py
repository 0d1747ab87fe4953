"""The pseudonymous installation id: created only when asked, private, rotated by deletion."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tests._full_disk import fill, tiny_tmpfs

from wking_device.errors import StorageError
from wking_device.upload import forget_installation_id, installation_id

if TYPE_CHECKING:
    from collections.abc import Iterator


def test_reading_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert installation_id(data, create=False) is None
    assert not data.exists()


def test_created_once_private_and_stable(tmp_path: Path) -> None:
    first = installation_id(tmp_path, create=True)
    assert first is not None
    assert len(first) == 32
    assert installation_id(tmp_path, create=True) == first
    assert installation_id(tmp_path, create=False) == first
    assert stat.S_IMODE((tmp_path / "installation_id").stat().st_mode) == 0o600


def test_a_full_deletion_rotates_it(tmp_path: Path) -> None:
    first = installation_id(tmp_path, create=True)
    assert forget_installation_id(tmp_path)
    assert not forget_installation_id(tmp_path)
    assert installation_id(tmp_path, create=False) is None
    assert installation_id(tmp_path, create=True) != first


def test_a_tampered_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "installation_id").write_text("C0:57:4B:00:00:01\n")
    with pytest.raises(StorageError, match="malformed"):
        installation_id(tmp_path, create=True)


@pytest.fixture(name="tiny")
def fixture_tiny(tmp_path: Path) -> Iterator[Path]:
    yield from tiny_tmpfs(tmp_path / "tiny")


def test_a_full_disk_leaves_no_empty_id_behind(tiny: Path) -> None:
    data = tiny / "data"
    filler = fill(tiny)
    with pytest.raises(StorageError, match="No space left"):
        installation_id(data, create=True)
    assert installation_id(data, create=False) is None
    assert sorted(p.name for p in data.iterdir()) == []  # nor a temporary file
    filler.unlink()
    created = installation_id(data, create=True)
    assert created is not None
    assert installation_id(data, create=False) == created


_FORGET = (
    "import sys; from pathlib import Path; from wking_device.upload import forget_installation_id;"
    " forget_installation_id(Path(sys.argv[1]))"
)


def test_a_forgotten_id_stays_forgotten_after_a_power_loss(tmp_path: Path) -> None:
    # The unlink is durable only once the directory is synced: without it a power loss after
    # 'wking data delete --all' could bring the old id (linkable to past uploads) back. Seen with
    # strace on a real process: the directory is opened and fsync'd after the unlink.
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("needs strace")
    data = tmp_path / "data"
    created = installation_id(data, create=True)
    assert created is not None
    log = tmp_path / "trace"
    calls = "trace=unlink,unlinkat,openat,open,fsync"
    traced = subprocess.run(
        [strace, "-f", "-o", str(log), "-e", calls, sys.executable, "-c", _FORGET, str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if traced.returncode != 0 and "ptrace" in traced.stderr:
        pytest.skip(f"strace cannot trace here: {traced.stderr.strip()}")
    assert traced.returncode == 0, traced.stderr
    assert installation_id(data, create=False) is None
    lines = log.read_text().splitlines()
    unlinked = next(
        i for i, call in enumerate(lines) if "installation_id" in call and "unlink" in call
    )
    after = lines[unlinked:]
    opened = [
        match.group(1)
        for call in after
        if (
            match := re.search(
                rf'open(?:at)?\(.*"{re.escape(str(data))}", O_RDONLY.*= (\d+)$', call
            )
        )
    ]
    assert opened, after
    assert any(re.search(rf"fsync\({opened[0]}\)\s+= 0", call) for call in after), after
