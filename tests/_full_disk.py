"""A really full disk for tests: a 1 MiB tmpfs (mounting needs root, as the tests run in CI).

``os.write`` on a filling disk writes part of what it is asked and returns without an error; only
the next write fails. :func:`fill` leaves a chosen number of free bytes, so a test can make a
write be cut short, or fail at once.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PAGE = 4096


def tiny_tmpfs(target: Path) -> Iterator[Path]:
    """Mount a 1 MiB tmpfs on ``target`` for the test (skipped where it cannot be mounted)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    target.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def fill(directory: Path, *, leave: int = 0) -> Path:
    """Fill the file system of ``directory``, then free ``leave`` bytes; return the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        size = 0
        while True:
            try:
                size += os.write(fd, b"\xff" * 65536)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        os.ftruncate(fd, size - leave)
    finally:
        os.close(fd)
    return filler
